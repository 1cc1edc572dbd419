"""``vtrain-dealer serve --listen HOST:PORT``: the preprocessing dealer of two-party training."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from protocol.cli_help import Parser, add_version
from protocol.errors import InputError
from prover.cli import _split_listen  # the same HOST:PORT rules as the trainer

from .service import ADVERSARIES, FetchLimits, build_dealer_server


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog="vtrain-dealer", description="The dealer of two-party secure training "
               "(trusted not to collude with either party; sees no data and no outputs).")
    add_version(p)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="serve the Dealer gRPC service")
    s.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0 picks a free port; default %(default)s)")
    s.add_argument("--tls-cert", help="PEM certificate chain (enables TLS, with --tls-key; default: no TLS)")
    s.add_argument("--tls-key", help="PEM private key for --tls-cert (default: none, no TLS)")
    s.add_argument("--adversary", choices=ADVERSARIES, help="a cheating dealer, for demos and tests (default: honest)")
    s.add_argument("--max-fetches", type=int, default=FetchLimits.max_fetches,
                   help="material streams served at once, in total (default %(default)s)")
    s.add_argument("--max-fetches-per-peer", type=int, default=FetchLimits.max_fetches_per_peer,
                   help="material streams served at once to one client address (default %(default)s)")
    s.add_argument("--send-timeout", type=float, default=FetchLimits.send_timeout,
                   help="seconds a chunk may wait for its caller to read it; then the stream is ended "
                        "(default %(default)s)")
    s.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    return p


def serve(args) -> int:
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host, port = _split_listen(args.listen)
    if bool(args.tls_cert) != bool(args.tls_key):
        raise InputError("--tls-cert and --tls-key go together")
    tls = None
    if args.tls_cert:
        try:
            tls = (Path(args.tls_cert).read_bytes(), Path(args.tls_key).read_bytes())
        except OSError as e:
            raise InputError(f"cannot read TLS files: {e}") from e
    limits = FetchLimits(args.max_fetches, args.max_fetches_per_peer, args.send_timeout)
    try:
        server, bound = build_dealer_server(host, port, args.adversary, tls, limits=limits)
    except (OSError, RuntimeError) as e:
        raise InputError(str(e)) from e
    server.start()
    shown = f"[{host}]" if ":" in host else host
    print(f"listening on {shown}:{bound}", flush=True)
    log = logging.getLogger("vtrain.dealer")
    if args.adversary:
        log.info("ADVERSARY %s", args.adversary)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    stop.wait()
    server.stop(grace=2).wait()
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        return serve(args)
    except InputError as e:
        print(f"vtrain-dealer: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
