"""The client side of a session: drives the gRPC flow, checks each signed statement as it arrives, and
records the transcript. The final verdict is ``audit.verify_transcript`` applied to that transcript."""

from __future__ import annotations

import copy
import os
import queue
import random
import socket
import threading
import time
from dataclasses import dataclass

import grpc

from protocol import convert, row_encoding
from protocol.dataset import Standardization, Table, quantized_rows
from protocol.errors import TranscriptFormatError, VerificationError
from protocol.evidence import RANDOMNESS_FIXED, RANDOMNESS_OS, client_binding, client_record
from protocol.hashing import tagged_hash
from protocol.merkle import DataCommitter, default_rows_per_leaf
from protocol.prg import seed_commitment
from protocol.snark import groth16, keys_io, snarkjs_io
from protocol.snark import session as snark_session
from protocol.statements import PROTOCOL_VERSION, Statement
from protocol.training import TrainConfig
from protocol.transcript import FORMAT
from protocol.wire import trainer_pb2 as pb
from protocol.wire import trainer_pb2_grpc as pb_grpc

from . import checks
from .audit import Verdict, rejected_verdict, verify_transcript
from .progress import SILENT, Progress


class SessionAborted(Exception):
    """The trainer answered with a gRPC error or broke the protocol flow before any verdict."""


class SessionIncomplete(SessionAborted):
    """The connection was lost (or the trainer fell silent) after the session started: the partial transcript
    (``transcript``, marked ``incomplete``, no verdict) is kept as evidence of what the trainer signed."""

    def __init__(self, message: str, transcript: dict):
        super().__init__(message)
        self.transcript = transcript


# gRPC codes that mean "the trainer went away", not "the trainer refused"
_LOST = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}


class Refused(SessionAborted):
    """RESOURCE_EXHAUSTED with the trainer's retry hint: it is busy, the request itself is fine."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = retry_after




def aborted(e: grpc.RpcError, prefix: str = "") -> SessionAborted:
    """The SessionAborted for a gRPC error: Refused when the trainer sent a retry hint."""
    msg = f"{prefix}{e.code().name}: {e.details()}"
    if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
        for k, v in (e.trailing_metadata() or ()):
            if k == convert.RETRY_AFTER_KEY:
                try:
                    return Refused(msg, max(0.0, min(float(v) / 1000, 300.0)))
                except ValueError:
                    break
    return SessionAborted(msg)


def _method_name(fn) -> str:
    name = getattr(fn, "_method", b"")
    return (name.decode() if isinstance(name, bytes) else str(name)).rsplit("/", 1)[-1] or "call"


def backoff_seconds(attempt: int, hint: float) -> float:
    """Exponential backoff from 0.5 s, at least the trainer's hint, at most 30 s, with 0-50% jitter (so refused
    clients do not come back in step)."""
    return min(30.0, max(hint, 0.5 * 2 ** attempt)) * (1 + random.random() / 2)


@dataclass
class ClientSeeds:
    """The client's secrets for one session. The audit seed and the nonce secret always come from the OS
    CSPRNG; the training seed too, unless the user fixed it (``--insecure-fixed-seed``, tests and demos)."""

    training_seed: bytes
    audit_seed: bytes
    nonce_secret: bytes
    randomness: str = RANDOMNESS_OS

    @classmethod
    def fresh(cls) -> ClientSeeds:
        return cls(os.urandom(32), os.urandom(32), os.urandom(32))

    @classmethod
    def fixed_training(cls, master: bytes) -> ClientSeeds:
        """``--insecure-fixed-seed``: the training seed (batch order, initial state) derived from ``master``, so
        a run can be repeated; the audit seed and the nonce secret stay fresh, so the challenge is still
        unpredictable. The verdict says the randomness was fixed by the user."""
        seed = tagged_hash("session-binding", b"client-seed/training", master)
        return cls(seed, os.urandom(32), os.urandom(32), RANDOMNESS_FIXED)


def open_channel(server: str, tls_ca: bytes | None = None, max_bytes: int = 64 * 1024 * 1024,
                 max_receive: int | None = None) -> grpc.Channel:
    """``max_receive``: the largest message accepted from the trainer (``checks.receive_cap`` of the session);
    a larger one fails the call with RESOURCE_EXHAUSTED before it is buffered."""
    opts = [("grpc.max_send_message_length", max_bytes),
            ("grpc.max_receive_message_length", max_receive or max_bytes)]
    if tls_ca is not None:
        return grpc.secure_channel(server, grpc.ssl_channel_credentials(root_certificates=tls_ca), options=opts)
    return grpc.insecure_channel(server, options=opts)


def preflight(server: str, timeout: float) -> None:
    """Tell "malformed address", "unknown host" and "nothing listening" apart before gRPC's reconnect loop
    (which reports all three as the same timeout). Raises SessionAborted with a one-line message."""
    if "://" in server or server.startswith(("unix:", "dns:", "ipv4:", "ipv6:")):
        return  # a gRPC target URI: left to gRPC
    host, sep, port = server.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SessionAborted(f"malformed address {server!r}: expected HOST:PORT with a port in 1..65535 "
                             f"(e.g. 127.0.0.1:50051)")
    try:
        addrs = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise SessionAborted(f"unknown host {host!r} ({getattr(e, 'strerror', None) or e}): check the name "
                             f"in --server") from None
    last = None
    for family, kind, proto, _, addr in addrs:
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(max(0.5, min(timeout, 10.0)))
                sock.connect(addr)
                return
        except ConnectionRefusedError:
            last = "refused"
        except OSError as e:
            last = last or (e.strerror or type(e).__name__)
    if last == "refused":
        raise SessionAborted(f"nothing is listening at {server} (connection refused): is `vtrain-prover serve` "
                             f"running there, on that port?")
    raise SessionAborted(f"cannot reach {server}: {last}")


def run_session(channel: grpc.Channel, table: Table, stdz: Standardization, cfg: TrainConfig, *,
                spot_checks: int, seeds: ClientSeeds, trainer_key: bytes | None = None, server_label: str = "",
                progress=None, rows_per_chunk: int | None = None, timeout: float | None = None,
                proof_kind: str = "spot", max_constraints: int | None = None, status=None,
                retries: int = 0, accept_key=None, timings: dict | None = None,
                ui: Progress = SILENT, rows=None) -> tuple[dict, Verdict]:
    """Returns (transcript, verdict). Raises SessionAborted for transport errors or a refused request. ``rows``:
    the table's quantized rows when the caller already has them (``quantized_rows(table, stdz, cfg.frac_bits)``).

    ``accept_key(pub)``, if given, is called with the trainer's key before anything is sent (the trust store);
    it raises to stop the session. The verdict is the transcript's own (spot check or SNARK); the caller runs
    the full replay (verify_transcript with the rows). ``ui`` shows the upload, the SNARK setup and the
    trainer's proving as progress bars (verifier/progress.py).

    ``retries``: a session the trainer refuses as busy (RESOURCE_EXHAUSTED with a retry hint) before the
    training seed is sent (CommitRandomness) is started again, as a new session, up to this many times, after
    ``backoff_seconds``. A refusal after the training seed left the client is never retried with that seed."""
    cfg.validate()
    if rows is None:
        rows = quantized_rows(table, stdz, cfg.frac_bits)
    n, d = rows.shape[0], rows.shape[1] - 1
    meta = {"source": table.source, "feature_names": table.feature_names, "target": table.target,
            "standardization": stdz.to_dict(), "randomness": seeds.randomness}
    if proof_kind == "snark":
        try:
            snark_session.check_size(cfg, n, d, max_constraints or snark_session.DEFAULT_MAX_CONSTRAINTS)
        except ValueError as e:
            raise SessionAborted(str(e)) from None
    elif proof_kind != "spot":
        raise SessionAborted(f"unknown proof kind {proof_kind!r}")
    # Block data leaves (vtrain/2). The client's own data root is computed while the rows are sent
    # (upload_rows); the client record commits to the data's shape and leaf size, not to its root
    # (docs/PROTOCOL.md §5, "When the client commits to what").
    # Values are sent and hashed at the table's canonical width (protocol/row_encoding.py, committed in the record).
    value_bytes = row_encoding.table_value_bytes(rows)
    rows_per_leaf = default_rows_per_leaf(d, n, spot_checks * cfg.batch_size, value_bytes)
    base: dict = {"format": FORMAT, "server": server_label, "config": cfg.to_dict(), "proof_kind": proof_kind,
                  "client": {"metadata": meta, "nonce_secret": seeds.nonce_secret.hex()},
                  "num_rows": n, "num_features": d, "rows_per_leaf": rows_per_leaf, "value_bytes": value_bytes,
                  "training_seed": seeds.training_seed.hex(), "audit_seed": seeds.audit_seed.hex(),
                  "spot_checks": spot_checks, "statements": {}}
    # Everything the client chose, committed before the trainer picks its session id (docs/PROTOCOL.md §5).
    return drive_session(channel, base, rows, cfg, seeds, spot_checks=spot_checks, trainer_key=trainer_key,
                         progress=progress, rows_per_chunk=rows_per_chunk, timeout=timeout, status=status,
                         retries=retries, accept_key=accept_key, timings=timings, ui=ui)


def drive_session(channel: grpc.Channel, base: dict, rows, cfg: TrainConfig, seeds: ClientSeeds, *, spot_checks: int,
                  trainer_key: bytes | None = None, progress=None, rows_per_chunk: int | None = None,
                  timeout: float | None = None, status=None, retries: int = 0, accept_key=None,
                  timings: dict | None = None, ui: Progress = SILENT) -> tuple[dict, Verdict]:
    """Commit the client record ``base`` (through the client nonce), run the session (``rows``: the client's rows
    to upload, or None for the trainer's own dataset named in ``base["trainer_data"]``), retrying a busy trainer
    as run_session describes; returns (transcript, verdict)."""
    proof_kind = base["proof_kind"]
    record = {**client_record(base), "config": base["config"], "proof_kind": proof_kind}
    base["client_nonce"] = client_binding(record, seeds.nonce_secret).hex()
    status = status or (lambda msg: None)
    attempt = 0
    while True:
        tr = copy.deepcopy(base)
        try:
            _flow(tr, channel, rows, cfg, seeds, spot_checks=spot_checks, trainer_key=trainer_key, progress=progress,
                  rows_per_chunk=rows_per_chunk, timeout=timeout, status=status, accept_key=accept_key, ui=ui)
        except SessionIncomplete as e:
            if "session_id" not in tr:
                raise SessionAborted(str(e)) from None
            tr["incomplete"] = str(e)
            e.transcript = tr
            raise
        except Refused as e:
            # "audit_commitment" is recorded just before CommitRandomness carries the training seed out: from
            # then on a new session with the same seed would let the trainer pick its session id knowing it.
            if attempt >= retries or "audit_commitment" in tr:
                raise
            delay = backoff_seconds(attempt, e.retry_after)
            status(f"the trainer is busy ({e}); new session in {delay:.1f} s (retry {attempt + 1} of {retries})")
            time.sleep(delay)
            attempt += 1
            continue
        except VerificationError as e:
            verdict = rejected_verdict(proof_kind, e)
            tr["verdict"] = verdict.to_dict()
            return tr, verdict
        break
    t0 = time.perf_counter()
    verdict = verify_transcript(tr, compare_recorded=False, live=True)
    if timings is not None:
        timings["spot_check"] = time.perf_counter() - t0
    tr["verdict"] = verdict.to_dict()
    return tr, verdict


def _flow(tr, channel, rows, cfg, seeds, *, spot_checks, trainer_key, progress, rows_per_chunk, timeout, status,
          accept_key, ui=SILENT):
    """The protocol flow; records everything in ``tr`` as it arrives (so a rejection keeps what was seen)."""
    stub = pb_grpc.TrainerStub(channel)
    n, d = tr["num_rows"], tr["num_features"]
    client_nonce = bytes.fromhex(tr["client_nonce"])

    def call(fn, *a, **kw):
        try:
            return fn(*a, timeout=timeout, **kw)
        except grpc.RpcError as e:
            if e.code() in _LOST and "session_id" in tr:
                raise SessionIncomplete(_lost_message(e, timeout, "mid-session"), tr) from None
            if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:  # name the call that ran out of time
                raise aborted(e, f"{_method_name(fn)}: ") from None
            raise aborted(e) from None

    info = call(stub.GetInfo, pb.GetInfoRequest())
    pub = bytes(info.trainer_public_key)
    if len(pub) != 32:
        raise SessionAborted(f"the trainer's GetInfo answer is malformed (a public key of {len(pub)} bytes, not 32)")
    tr["trainer_key"] = pub.hex()
    if trainer_key is not None and pub != trainer_key:
        raise VerificationError(f"the server's trainer key {pub.hex()} is not the pinned key {trainer_key.hex()}")
    if accept_key is not None:
        accept_key(pub)
    if info.protocol_version != PROTOCOL_VERSION:
        raise SessionAborted(f"the trainer speaks {info.protocol_version!r}, this client {PROTOCOL_VERSION!r}")
    _check_limits(info.limits, n, d, cfg.num_steps(n))
    kind = tr["proof_kind"]
    if kind not in info.proof_kinds:
        raise SessionAborted(f"the trainer offers proof kinds {list(info.proof_kinds)}, not {kind!r}")
    msg_cap = info.limits.max_message_bytes or (4 << 20)

    resp = call(stub.OpenSession, pb.OpenSessionRequest(config=convert.config_to_proto(cfg), client_nonce=client_nonce,
                                                        proof_kind=kind))
    sid, server_nonce = bytes(resp.session_id), bytes(resp.server_nonce)
    if len(sid) != 16 or len(server_nonce) != 32:
        raise SessionAborted(f"the trainer's OpenSession answer is malformed (a session id of {len(sid)} bytes and "
                             f"a server nonce of {len(server_nonce)}; the protocol has 16 and 32)")
    tr.update(session_id=sid.hex(), server_nonce=server_nonce.hex())
    session_signed = convert.signed_from_proto(resp.session_statement)
    tr["statements"]["session"] = [x.hex() for x in session_signed]
    checks.check_session(pub, session_signed, sid, client_nonce=client_nonce, server_nonce=server_nonce, cfg=cfg,
                         proof_kind=kind)

    try:
        if rows is None:  # the trainer's own dataset (docs/PROTOCOL.md section 12)
            resp = call(stub.UseTrainerData, pb.UseTrainerDataRequest(session_id=sid, dataset=tr["trainer_data"]["name"]))
            data_signed = convert.signed_from_proto(resp.data_statement)
            tr["statements"]["data"] = [x.hex() for x in data_signed]
        else:
            with ui.bar("uploading", total=n, unit="row") as bar:
                data_signed = upload_rows(channel, call, sid, rows, msg_cap, rows_per_chunk, tr["rows_per_leaf"], tr,
                                          bar, tr["value_bytes"])
    except Refused:
        try:  # give the slot back before trying again
            stub.CloseSession(pb.CloseSessionRequest(session_id=sid), timeout=timeout)
        except grpc.RpcError:
            pass
        raise
    data_root = bytes.fromhex(tr["data_root"])
    signed_root = _signed_root(data_signed, data_root)
    checks.check_data(pub, data_signed, sid, data_root=signed_root, num_rows=n, num_features=d,
                      rows_per_leaf=tr["rows_per_leaf"], value_bytes=tr["value_bytes"])
    if signed_root != data_root and rows is None:
        raise VerificationError(f"the trainer's signed data_root {signed_root.hex()} is not the root of the data card "
                                f"this client chose ({data_root.hex()})")
    if signed_root != data_root:
        raise VerificationError(
            f"the trainer's signed data root {signed_root.hex()} is not the root of the rows "
            f"this client sent ({data_root.hex()}): it committed to other data. The root is not part of the "
            f"client's committed record (docs/PROTOCOL.md §5), so a third party cannot attribute this to the "
            f"trainer; the recording client can")

    commitment = seed_commitment(seeds.audit_seed, sid)
    tr["audit_commitment"] = commitment.hex()
    resp = call(stub.CommitRandomness, pb.CommitRandomnessRequest(
        session_id=sid, training_seed=seeds.training_seed, audit_commitment=commitment, spot_checks=spot_checks))
    rand_signed = convert.signed_from_proto(resp.randomness_statement)
    tr["statements"]["randomness"] = [x.hex() for x in rand_signed]
    checks.check_randomness(pub, rand_signed, sid, data_root=data_root, training_seed=seeds.training_seed,
                            audit_commitment=commitment, spot_checks=spot_checks)

    snark_state = None
    if kind == "snark":
        with ui.bar("SNARK setup", unit="s"):
            if rows is None:  # the trainer's own data: the zero-knowledge circuit
                from .trainer_data_client import snark_setup

                snark_state = snark_setup(stub, call, tr, cfg, sid, seeds, status, msg_cap)
            else:
                snark_state = _snark_setup(stub, call, tr, rows, cfg, sid, session_signed[0], seeds, status, msg_cap)

    T = cfg.num_steps(n)
    final, stream_error = _receive_training(stub, tr, sid, T, cfg, timeout, progress, status, ui)
    if stream_error is not None:
        tr["stream_error"] = stream_error
        raise VerificationError(checks.incomplete_reason(stream_error))
    if final is None:
        raise VerificationError(checks.incomplete_reason(None))
    tr["statements"]["final"] = [x.hex() for x in convert.signed_from_proto(final.final_statement)]
    tr["model"] = [int(v) for v in final.model]
    if final.extras_json:
        tr["model_extras"] = final.extras_json
    try:
        checks.check_final_shape(tr["model"], final.extras_json, d, T, cfg.num_params(d))
    except VerificationError:
        return  # no need for openings: the verdict (verify_transcript) rejects the model's shape

    try:
        resp = stub.Prove(pb.ProveRequest(session_id=sid, audit_seed=seeds.audit_seed, kind=kind), timeout=timeout)
    except grpc.RpcError as e:
        if e.code() in _LOST:
            raise SessionIncomplete(_lost_message(e, timeout, "while proving"), tr) from None
        # the model exists but comes without a proof: keep it, unverified, with the reason (the verdict is then
        # computed from everything else the trainer signed, exactly as the audit recomputes it)
        tr["proof_error"] = f"{e.code().name}: {e.details()}"
        if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in (e.details() or ""):
            tr["proof_error"] = f"its answer is larger than this session allows: {e.details()}"
        return
    if kind == "snark":
        try:
            proof = snarkjs_io.proof_from_bytes(bytes(resp.snark_proof))
        except ValueError as e:
            raise VerificationError(f"the trainer's SNARK proof is malformed: {e}") from None
        snark_state["proof"] = snarkjs_io.proof_to_json(proof)
        snark_state["statement"] = [bytes(resp.snark_statement.statement).hex(),
                                    bytes(resp.snark_statement.signature).hex()]
        theta0 = snark_state.pop("theta0")
        binding = snark_session.session_binding(session_signed[0])
        if rows is None:
            from .trainer_data_client import private_public

            public = private_public(tr, tr["model"], theta0, binding)
        else:
            public = snark_session.public_inputs(tr["model"], theta0, binding)
        snark_state["public"] = snarkjs_io.public_to_json(public)
        tr["proof"] = snark_state
    else:
        tr["proof"] = {"kind": "spot", "openings": [convert.opening_from_proto(op) for op in resp.openings],
                       "statement": [x.hex() for x in convert.signed_from_proto(resp.openings_statement)]}
    try:
        stub.CloseSession(pb.CloseSessionRequest(session_id=sid), timeout=timeout)
    except grpc.RpcError:
        pass


def _signed_root(signed, default: bytes) -> bytes:
    """The data root a (signature-checked) data statement carries; ``default`` if it carries none."""
    try:
        return bytes(Statement.decode(signed[0]).fields.get("data_root", default))
    except (TranscriptFormatError, ValueError, TypeError):
        return default


def _lost_message(e: grpc.RpcError, timeout, when: str) -> str:
    if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"the trainer did not answer within --timeout {timeout:g} s {when}".rstrip()
    return f"the trainer disconnected {when} ({e.code().name}: {e.details()})".replace("  ", " ")


class _Silent(Exception):
    pass


class _Unreadable(Exception):
    pass


def _events(call, idle: float | None):
    """The Train stream's events, read by a helper thread so that a trainer that stops sending is noticed
    after ``idle`` seconds without a message (the whole stream has no deadline: training may be long). The
    queue is small, so an unread flood is held back by gRPC flow control, not buffered here."""
    q: queue.Queue = queue.Queue(maxsize=4)
    done = threading.Event()

    def put(item) -> None:
        while not done.is_set():
            try:
                q.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def pump() -> None:
        try:
            for ev in call:
                put(("event", ev))
                if done.is_set():
                    return
            put(("end", None))
        except grpc.RpcError as e:
            put(("error", e))
        except Exception as e:  # noqa: BLE001 - a message the client cannot decode is the trainer's fault
            put(("error", _Unreadable(f"{type(e).__name__}: {e}")))

    threading.Thread(target=pump, name="vtrain-train-stream", daemon=True).start()
    try:
        while True:
            try:
                kind, item = q.get(timeout=idle)
            except queue.Empty:
                raise _Silent() from None
            if kind == "event":
                yield item
            elif kind == "end":
                return
            else:
                raise item
    finally:
        done.set()
        call.cancel()


def _receive_training(stub, tr, sid, T, cfg, timeout, progress, status, ui: Progress = SILENT):
    """Consume the Train stream within the session's caps: at most T+1 state leaves (kept as 32 bytes each),
    at most floor(T/C) checkpoints, at most one final result, each message within the channel's receive cap.
    Returns (final or None, stream_error or None); the recorded leaves and checkpoints are in ``tr``."""
    leaves = bytearray()
    cps: list[list[str]] = []
    final, error = None, None
    max_cps = T // cfg.checkpoint_interval
    tr["statements"]["checkpoints"] = cps
    call = stub.Train(pb.TrainRequest(session_id=sid))
    proving = None
    try:
        for ev in _events(call, timeout):
            which = ev.WhichOneof("event")
            if final is not None and which != "progress":  # (a SNARK trainer reports its proving after it)
                error = "sent more after its final result"
            elif which == "leaves":
                h = bytes(ev.leaves.hashes)
                have = len(leaves) // 32
                if ev.leaves.first_step != have or len(h) % 32:
                    error = (f"sent state commitments out of order or malformed (from step {ev.leaves.first_step}, "
                             f"{len(h)} bytes, after {have} leaves)")
                elif have + len(h) // 32 > T + 1:
                    leaves += h[:32 * (T + 2 - have)]  # one leaf beyond T+1 shows the overflow; the rest is dropped
                    error = checks.leaf_flood_reason(T)
                else:
                    leaves += h
            elif which == "checkpoint":
                cps.append([bytes(ev.checkpoint.statement).hex(), bytes(ev.checkpoint.signature).hex()])
                if len(cps) > max_cps:
                    error = f"sent more than the {max_cps} checkpoint statements of {T} steps every {cfg.checkpoint_interval}"
            elif which == "progress" and ev.progress.phase == "proving":
                status("the trainer is proving" if ev.progress.step == 0 else "the trainer finished its proof")
                proving = _proving_bar(ui, proving, ev.progress.step == 0)
            elif which == "progress" and progress is not None:
                progress(min(ev.progress.step, T), T, ev.progress.epoch, ev.progress.loss)
            elif which == "final":
                final = ev.final
            elif which is None:
                error = "sent an empty or unknown training event"
            if error is not None:
                break
    except _Unreadable as e:
        error = f"sent a message the client cannot read ({e})"
    except _Silent:
        tr["state_leaves"] = leaves.hex()
        raise SessionIncomplete(f"the trainer sent nothing for {timeout:g} s (--timeout) during training, after "
                                f"{len(leaves) // 32} of {T + 1} state commitments; gave up", tr) from None
    except grpc.RpcError as e:
        tr["state_leaves"] = leaves.hex()
        if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in (e.details() or ""):
            error = f"sent a message larger than this session allows ({e.details()})"
        elif e.code() in _LOST or "session_id" not in tr:
            raise SessionIncomplete(_lost_message(e, timeout, f"during training (after {len(leaves) // 32} of "
                                                              f"{T + 1} state commitments)"), tr) from None
        else:
            raise SessionAborted(f"training failed: {e.code().name}: {e.details()}") from None
    finally:
        _proving_bar(ui, proving, False)
    tr["state_leaves"] = leaves.hex()
    return final, error


def upload_rows(channel, call, sid: bytes, rows, msg_cap: int, rows_per_chunk: int | None, rows_per_leaf: int,
                tr: dict, bar=None, value_bytes: int = 8) -> tuple[bytes, bytes]:
    """Stream the rows (about 1 MiB per chunk, values of ``value_bytes`` bytes) in block leaves of ``rows_per_leaf``
    rows. This thread packs each chunk once, queues it for gRPC's sending thread and hashes it into the client's
    own data leaves while the previous chunk is on the wire (hashlib releases the GIL on each >= 2 KiB leaf,
    docs/PROTOCOL.md §5). Records the client's data root as ``tr["data_root"]`` and the signed data statement;
    returns the signed data statement."""
    n, d = rows.shape[0], rows.shape[1] - 1
    per_chunk = rows_per_chunk or max(1, min(1 << 20, msg_cap // 2) // ((d + 1) * value_bytes))
    if rows_per_chunk is None and per_chunk >= rows_per_leaf:
        per_chunk = per_chunk // rows_per_leaf * rows_per_leaf  # whole leaves per chunk: hashed with no copy
    method = channel.stream_unary("/vtrain.v1.Trainer/UploadData",  # chunks are serialized here (chunk_head)
                                  response_deserializer=pb.UploadDataResponse.FromString)
    q: queue.Queue = queue.Queue(maxsize=4)
    requests = iter(q.get, None)
    fut = call(method.future, requests if bar is None else _counted(requests, bar, n, per_chunk))
    committer = DataCommitter(d, rows_per_leaf, value_bytes=value_bytes)
    sending = True
    try:
        for start in range(0, n, per_chunk):  # all of it, even if the call fails: a partial transcript
            part = row_encoding.pack(rows[start:start + per_chunk], value_bytes)  # records the client's root too
            if sending:
                msg = b"".join((convert.chunk_head(sid, n, d, rows_per_leaf, value_bytes, part.shape[0], part.nbytes),
                                memoryview(part).cast("B")))
                sending = _put(q, msg, fut)
            committer.add(part)
    finally:
        if not _put(q, None, fut):
            try:  # the call ended: let gRPC's request thread, if it is still waiting on the queue, finish
                q.put_nowait(None)
            except queue.Full:
                pass
    committer.finish()
    tr["data_root"] = committer.root().hex()
    resp = call(lambda timeout=None: fut.result())
    data_signed = convert.signed_from_proto(resp.data_statement)
    tr["statements"]["data"] = [x.hex() for x in data_signed]
    return data_signed


def _put(q: queue.Queue, item, fut) -> bool:
    """Queue ``item`` for the sending thread; False once the call has ended (nothing reads the queue then)."""
    while not fut.done():
        try:
            q.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def _counted(chunks, bar, n: int, per_chunk: int):
    """Pass the upload's chunks through, advancing ``bar`` by the rows each one carries."""
    for start, chunk in zip(range(0, n, per_chunk), chunks):
        yield chunk
        bar.update(min(per_chunk, n - start))


def _proving_bar(ui: Progress, bar, start: bool):
    """The trainer's proof has no known length: an elapsed-time bar between its start and end events."""
    if bar is not None:
        bar.close()
    return ui.bar("trainer proving", unit="s") if start else None


def _check_limits(lim, n: int, d: int, steps: int) -> None:
    """Refuse early, with the server's own numbers, what the trainer would refuse after the upload."""
    for what, have, cap in (("features", d, lim.max_features), ("rows", n, lim.max_rows),
                            ("training steps", steps, lim.max_steps)):
        if cap and have > cap:
            raise SessionAborted(f"RESOURCE_EXHAUSTED: this session needs {have} {what}, the trainer's limit is {cap}")


def _snark_setup(stub, call, tr, rows, cfg, sid, session_statement, seeds, status, msg_cap) -> dict:
    """Build the session's circuit, run the Groth16 setup with fresh randomness (the toxic waste never leaves
    groth16.setup_random), send the proving key, keep the verifying key."""
    import time

    from protocol.prg import SeedContext
    from protocol.training import Schedule

    sched = Schedule(SeedContext(sid, bytes.fromhex(tr["data_root"]), seeds.training_seed), cfg, *rows[:, :-1].shape)
    t0 = time.perf_counter()
    cs, _, _ = snark_session.build(rows[:, :-1], rows[:, -1], sched, cfg)
    status(f"SNARK setup: {cs.n_constraints} constraints, {cs.n_wires} wires ...")
    pk, vk = groth16.setup_random(cs)
    setup_s = time.perf_counter() - t0
    key = keys_io.pk_to_bytes(pk)
    status(f"SNARK setup done in {setup_s:.1f} s; sending the proving key ({len(key) / 1e6:.1f} MB)")
    resp = call(stub.UploadProvingKey, convert.key_to_chunks(sid, key, max(1 << 16, min(1 << 22, msg_cap // 2))))
    if bytes(resp.vk_hash) != snark_session.vk_hash(vk):
        raise VerificationError("the trainer read a different verifying key from the proving key it received")
    return {"kind": "snark", "vk": snarkjs_io.vk_to_json(vk), "constraints": cs.n_constraints,
            "setup_seconds": round(setup_s, 3), "proving_key_bytes": len(key),
            "theta0": [int(v) for v in sched.initial_state()]}
