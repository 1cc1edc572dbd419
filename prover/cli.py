"""``vtrain-prover``: generate a trainer key, serve the Trainer gRPC service."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from protocol.cli_help import Parser, add_version
from protocol.errors import InputError
from protocol.keys import generate_key_file, load_private_key, public_bytes

from .adversaries import STRATEGIES, release_stalls
from .session import Limits


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog="vtrain-prover", description="The trainer (prover) side of vtrain.")
    add_version(p)
    sub = p.add_subparsers(dest="command", required=True)
    k = sub.add_parser("keygen", help="create an Ed25519 trainer key (PEM, mode 0600) and print its public key")
    k.add_argument("--out", required=True, help="path of the new private key file")
    k.add_argument("--force", action="store_true", help="overwrite an existing file")
    s = sub.add_parser("serve", help="serve the Trainer gRPC service")
    s.add_argument("--key", required=True, help="trainer private key (from keygen)")
    s.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0 picks a free port; default %(default)s)")
    s.add_argument("--tls-cert", help="PEM certificate chain (enables TLS, with --tls-key; default: no TLS)")
    s.add_argument("--tls-key", help="PEM private key for --tls-cert (default: none, no TLS)")
    d = Limits()
    s.add_argument("--max-message-bytes", type=int, default=d.max_message_bytes,
                   help="largest gRPC message sent or received, bytes")
    s.add_argument("--max-rows", type=int, default=d.max_rows, help="most data rows per session")
    s.add_argument("--max-features", type=int, default=d.max_features, help="most feature columns per session")
    s.add_argument("--max-steps", type=int, default=d.max_steps,
                   help="most training steps per session (epochs x rows / batch size)")
    s.add_argument("--max-sessions", type=int, default=d.max_sessions, help="sessions held at the same time")
    s.add_argument("--idle-timeout", type=int, default=d.idle_timeout_seconds, help="seconds before an idle session expires")
    s.add_argument("--max-spot-checks", type=int, default=d.max_spot_checks,
                   help="most steps a client may challenge in the spot check")
    s.add_argument("--max-constraints", type=int, default=d.max_constraints, help="largest SNARK circuit to prove")
    s.add_argument("--max-data-bytes", type=int, default=d.max_data_bytes, help="largest dataset held per session")
    # admission control and memory (prover/admission.py; README "Limits")
    s.add_argument("--max-sessions-per-peer", type=int, default=d.max_sessions_per_peer,
                   help="open sessions one client address may hold (default %(default)s)")
    s.add_argument("--max-streams", type=int, default=d.max_streams,
                   help="concurrent UploadData/UploadProvingKey streams (default %(default)s)")
    s.add_argument("--max-streams-per-peer", type=int, default=d.max_streams_per_peer,
                   help="concurrent upload streams per client address (default %(default)s)")
    s.add_argument("--max-watchers", type=int, default=d.max_watchers,
                   help="open Health/Watch and reflection streams, all clients together (default %(default)s)")
    s.add_argument("--max-watchers-per-peer", type=int, default=d.max_watchers_per_peer,
                   help="open Health/Watch and reflection streams per client address (default %(default)s)")
    s.add_argument("--upload-start-timeout", type=float, default=d.upload_start_seconds,
                   help="seconds an opened session may wait for its upload to start (default %(default)s)")
    s.add_argument("--receive-timeout", type=float, default=d.receive_timeout_seconds,
                   help="seconds a client stream may stay silent before it is ended (default %(default)s)")
    s.add_argument("--memory-budget", type=int, default=d.memory_budget_bytes,
                   help="bytes all sessions together may hold at their peak; new work beyond it is refused with "
                        "RESOURCE_EXHAUSTED and a retry hint (default %(default)s = 8 GiB)")
    s.add_argument("--workers", type=int, default=4, help="threads for training, proving and upload finishing")
    s.add_argument("--max-training", type=int, default=d.max_training,
                   help="sessions training at once, at most --workers; the others wait their turn holding only "
                        "their rows (default %(default)s: training holds the GIL, more mostly adds memory)")
    s.add_argument("--json-logs", action="store_true", help="one JSON object per log line on stderr")
    s.add_argument("--adversary", help="run a named cheating strategy (for demos and tests; default: honest): "
                   + ", ".join(sorted(set(STRATEGIES) - {"honest"})) + ", signature-backdoor, ball-backdoor")
    s.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    from . import datasets

    datasets.add_arguments(s)
    from . import trainer_data

    trainer_data.add_arguments(s)
    return p


class JsonFormatter(logging.Formatter):
    """``--json-logs``: one JSON object per line: time, level, logger, message, and the structured fields a
    record carries (event, session, peer, method, status, reason)."""

    FIELDS = ("event", "session", "peer", "method", "status", "reason")

    def format(self, record: logging.LogRecord) -> str:
        import json

        doc = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name,
               "message": record.getMessage()}
        doc.update({k: getattr(record, k) for k in self.FIELDS if hasattr(record, k)})
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, sort_keys=True)


def _split_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise InputError(f"--listen must be HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def serve(args) -> int:
    from .server import build_server

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if args.json_logs else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[handler])
    key = load_private_key(args.key)
    host, port = _split_listen(args.listen)
    tls = None
    if bool(args.tls_cert) != bool(args.tls_key):
        raise InputError("--tls-cert and --tls-key go together")
    if args.tls_cert:
        try:
            tls = (Path(args.tls_cert).read_bytes(), Path(args.tls_key).read_bytes())
        except OSError as e:
            raise InputError(f"cannot read TLS files: {e}") from e
    if args.max_training < 1:
        raise InputError(f"--max-training must be at least 1, got {args.max_training}")
    limits = Limits(max_message_bytes=args.max_message_bytes, max_rows=args.max_rows,
                    max_features=args.max_features, max_steps=args.max_steps, max_sessions=args.max_sessions,
                    idle_timeout_seconds=args.idle_timeout, max_spot_checks=args.max_spot_checks,
                    max_constraints=args.max_constraints, max_data_bytes=args.max_data_bytes,
                    max_sessions_per_peer=args.max_sessions_per_peer, max_streams=args.max_streams,
                    max_streams_per_peer=args.max_streams_per_peer, upload_start_seconds=args.upload_start_timeout,
                    receive_timeout_seconds=args.receive_timeout, memory_budget_bytes=args.memory_budget,
                    max_training=args.max_training, max_watchers=args.max_watchers,
                    max_watchers_per_peer=args.max_watchers_per_peer)
    try:
        server, bound, _ = build_server(key, host, port, limits, args.adversary, tls, workers=args.workers)
    except ValueError as e:
        raise InputError(str(e)) from e
    from . import datasets

    served = datasets.attach(server, args)
    if served is not None:  # sessions on the trainer's own data: commit each dataset once (docs/PROTOCOL.md §11)
        from .trainer_data import commit_all

        server.manager.trainer_data = commit_all(key, public_bytes(key), served.tables, args)
    server.start()
    shown = f"[{host}]" if ":" in host else host
    print(f"listening on {shown}:{bound}", flush=True)
    log = logging.getLogger("vtrain.prover")
    log.info("trainer public key %s%s%s", public_bytes(key).hex(), ", TLS" if tls else "",
             f", ADVERSARY {args.adversary}" if args.adversary else "")
    stop = threading.Event()

    def _stop(signum, frame):
        log.info("signal %d: shutting down", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    stop.wait()
    release_stalls()  # a stalled `--adversary slow` stream must not keep the process alive
    server.stop(grace=2).wait()
    log.info("stopped")
    _exit_if_workers_are_stuck(log)
    return 0


def _exit_if_workers_are_stuck(log) -> None:
    """A synchronous handler thread (e.g. a two-party session whose client aborted) can still wait for a
    request read that the stopped event loop will never complete; the interpreter would join it at exit and
    `serve` would hang after "stopped". Everything the server owns is closed by now, so exit at once."""
    pool = [t for t in threading.enumerate() if t.name.startswith(("vtrain-sync", "vtrain-work"))]
    for t in pool:  # the interpreter joins executor threads at exit, daemon or not
        t.join(timeout=0.5)
    stuck = [t for t in pool if t.is_alive()]
    if stuck:
        log.info("%d handler thread(s) still blocked on a finished call; exiting without waiting", len(stuck))
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "keygen":
            pub = generate_key_file(args.out, overwrite=args.force)
            print(pub.hex())
            return 0
        return serve(args)
    except InputError as e:
        print(f"vtrain-prover: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
