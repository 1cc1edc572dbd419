"""The trainer's side of two-party training: the ``vtrain.v1.TwoPartyTraining`` service (docs/MPC.md).

A thin servicer: the first frame (hello) is checked and answered, then the trainer runs party 1 of
``mpc.secure_training`` with the rows of the named dataset, quantized with the client's standardization.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading

from mpc.cheating import get_hooks
from mpc.errors import MpcAbort, MpcOverflow
from mpc.hashing import mpc_hash
from mpc.plan import Plan
from mpc.secure_training import REVEAL_MODES, run_party
from mpc.transport import LoopTransport, pump_requests
from protocol.dataset import CLIP, Standardization, fit_standardization, quantize_table
from protocol.errors import FixedPointOverflow, InputError
from protocol.training import TrainConfig
from protocol.wire import mpc_pb2, mpc_pb2_grpc

from .admission import Admission, Overloaded, peer_host
from .datasets import Datasets

log = logging.getLogger("vtrain.prover.mpc")
MAX_SESSIONS = 4
MAX_STEPS = 100_000
IDLE_SECONDS = 600.0  # a client's silence before the session is ended, without the trainer service's limits
HELLO_BYTES = 1 << 20  # the largest first frame (a hello: config, d <= 1024 feature names, their statistics)
METHOD = "TwoPartyTraining.Run"
MAX_NAME = 256  # characters of a dataset name echoed in a refusal
INBOX_FRAMES = 2  # frames of a client's read ahead of the session: the protocol alternates (docs/MPC.md 4)


def frame_limit(plan: Plan) -> int:
    """The largest frame an honest client sends in this session: its masked inputs (16 bytes per value,
    docs/MPC.md section 3) or a step's openings (well under 1 MiB at d <= 1024, B <= 4096), with room."""
    return 16 * plan.n0 * (plan.d + 1) + (4 << 20)


def config_from_proto(c: mpc_pb2.MpcConfig) -> TrainConfig:
    return TrainConfig(model=c.model, epochs=c.epochs, batch_size=c.batch_size, lr_num=c.lr_num,
                       lr_shift=c.lr_shift, l2_num=c.l2_num, frac_bits=c.frac_bits,
                       weight_bits=c.weight_bits).validate()


def config_to_proto(cfg: TrainConfig) -> mpc_pb2.MpcConfig:
    return mpc_pb2.MpcConfig(model=cfg.model, epochs=cfg.epochs, batch_size=cfg.batch_size, lr_num=cfg.lr_num,
                             lr_shift=cfg.lr_shift, l2_num=cfg.l2_num, frac_bits=cfg.frac_bits,
                             weight_bits=cfg.weight_bits)


def session_id_of(client_nonce: bytes, trainer_nonce: bytes) -> bytes:
    return mpc_hash("session-id", client_nonce, trainer_nonce)[:16]


class TwoPartyServicer(mpc_pb2_grpc.TwoPartyTrainingServicer):
    def __init__(self, datasets: Datasets, dealers: list[str], adversary: str | None, dealer_tls_ca: bytes | None,
                 admission: Admission | None = None):
        get_hooks(adversary)  # fail early on an unknown name
        self.datasets, self.dealers, self.adversary, self.tls_ca = datasets, dealers, adversary, dealer_tls_ca
        self._slots = threading.BoundedSemaphore(MAX_SESSIONS)
        self.admission = admission  # the trainer service's global and per-client session slots, shared

    async def Run(self, request_iterator, context):
        peer = peer_host(context.peer())
        if self.admission is not None:
            try:
                self.admission.admit_session(peer)
            except Overloaded as e:
                yield mpc_pb2.MpcFrame(abort=_refused(peer, f"the trainer is busy: {e}"))
                return
        if not self._slots.acquire(blocking=False):
            if self.admission is not None:
                self.admission.release_session(peer, 0)
            yield mpc_pb2.MpcFrame(abort=_refused(peer, f"the trainer is busy ({MAX_SESSIONS} two-party sessions "
                                                        "running); retry later"))
            return
        # the request stream is read by a task on this loop and the session runs in its own thread (mpc.transport
        # LoopTransport); no thread of the server's pool ever waits on a read
        # A slot is held only by work (README "Trainer service limits"): the hello must come within the upload
        # start timeout and every later frame within the receive timeout; at most INBOX_FRAMES frames are read
        # ahead (then gRPC flow control holds the client back), each at most the size the plan allows.
        lim = self.admission.limits if self.admission is not None else None
        hello_wait = lim.upload_start_seconds if lim is not None else IDLE_SECONDS
        frame_wait = lim.receive_timeout_seconds if lim is not None else IDLE_SECONDS
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue = asyncio.Queue(maxsize=INBOX_FRAMES)
        out: asyncio.Queue = asyncio.Queue()
        cap = [HELLO_BYTES]
        reader = asyncio.ensure_future(pump_requests(request_iterator, inbox, max_bytes=cap))

        def work():
            try:
                self._session(LoopTransport(loop, inbox, out, frame_wait), hello_wait, cap, peer, frame_wait)
            except Exception:
                log.exception("two-party session crashed")
            finally:
                self._slots.release()
                if self.admission is not None:
                    self.admission.release_session(peer, 0)
                loop.call_soon_threadsafe(out.put_nowait, None)

        threading.Thread(target=work, daemon=True).start()
        try:
            while True:
                m = await out.get()
                if m is None:
                    return
                yield m
        finally:  # the call is over (done, or cancelled by the client): stop reading, wake the session if it waits
            reader.cancel()
            while not inbox.empty():
                inbox.get_nowait()
            inbox.put_nowait(MpcAbort("the client's call ended"))

    def _prepare(self, h: mpc_pb2.MpcHello, name: str):
        """-> (plan, own quantized rows, the standardization both use when it is the trainer's, else None)."""
        if not h.HasField("config") or len(h.client_nonce) != 32:
            raise InputError("the first message must be a hello with a config and a 32-byte nonce")
        cfg = config_from_proto(h.config)
        table = self.datasets.get(h.dataset)
        n0, n1, d = int(h.client_rows), table.X.shape[0], len(table.feature_names)
        schemaless = n0 == 0 and not h.feature_names and not h.target  # the client takes this dataset's schema
        if not schemaless and (list(h.feature_names) != table.feature_names or h.target != table.target):
            raise InputError(f"dataset {name!r} has columns {table.feature_names} -> {table.target!r}; the client "
                             f"sent {list(h.feature_names)} -> {h.target!r}")
        if n0 == 0 and n1 == 0:
            raise InputError(f"neither party holds rows: the client sent none and dataset {name!r} is a header-only "
                             "table (a schema): nothing to train on")
        plan = Plan.build(n0, n1, d, cfg)
        if plan.num_steps > MAX_STEPS:
            raise InputError(f"{plan.num_steps} steps is over this trainer's limit of {MAX_STEPS}")
        if n0 == 0:  # the standardization comes from the party that holds rows (docs/MPC.md section 4)
            if len(h.mean) or len(h.std) or h.target_mean or h.target_std:
                raise InputError("a client without rows sends no standardization (the trainer's is used)")
            stdz = sent = fit_standardization(table, cfg.model)
        else:
            if len(h.mean) != d or len(h.std) != d:
                raise InputError("the client's standardization does not match the number of features")
            stdz = Standardization.from_dict({"mean": list(h.mean), "std": list(h.std), "clip": CLIP,
                                              "target_mean": h.target_mean, "target_std": h.target_std})
            sent = None
        if self.dealers and h.dealer not in self.dealers:
            raise InputError(f"this trainer only uses the dealers {', '.join(self.dealers)}, not {h.dealer!r}")
        if h.reveal not in REVEAL_MODES:
            raise InputError(f"reveal must be one of {', '.join(REVEAL_MODES)}")
        try:
            Xq, Yq = quantize_table(table, stdz, cfg.frac_bits)
        except (FixedPointOverflow, ValueError) as e:  # finite but extreme statistics (a std of 1e-300): named
            whose = "its own" if sent is not None else "the client's"
            raise InputError(f"dataset {name!r} quantized with {whose} standardization leaves the fixed-point "
                             f"range: {e}") from None
        return plan, Xq, Yq, sent

    def _reply(self, nonce: bytes, plan: Plan, name: str, stdz: Standardization | None) -> mpc_pb2.MpcFrame:
        table = self.datasets.get(name)
        r = mpc_pb2.MpcHelloReply(trainer_nonce=nonce, trainer_rows=plan.n1, feature_names=table.feature_names,
                                  target=table.target)
        if stdz is not None:
            r.mean[:], r.std[:] = stdz.mean, stdz.std
            r.target_mean, r.target_std = stdz.target_mean, stdz.target_std
        return mpc_pb2.MpcFrame(hello_reply=r)

    def _session(self, tr: LoopTransport, hello_wait: float, cap: list, peer: str = "",
                 dealer_wait: float = IDLE_SECONDS) -> None:
        try:
            first = tr.recv_proto(timeout=hello_wait)
        except MpcAbort as e:
            _refused(peer, f"the session ended before its hello: {e}")
            return
        h = first.hello
        name = h.dataset[:MAX_NAME]  # echoed in messages: kept within gRPC's status size
        try:
            plan, Xq, Yq, stdz = self._prepare(h, name)
        except (InputError, ValueError) as e:
            tr.send_proto(mpc_pb2.MpcFrame(abort=_refused(peer, f"refused: {e}")))
            return
        cap[0] = frame_limit(plan)
        nonce = os.urandom(32)
        sid = session_id_of(bytes(h.client_nonce), nonce)
        tr.send_proto(self._reply(nonce, plan, h.dataset, stdz))
        from dealer.client import DealerPreprocessing

        pre = DealerPreprocessing(h.dealer, sid, 1, plan, self.tls_ca, timeout=dealer_wait)  # its silence as a client's
        log.info("two-party session %s start peer=%s: dataset %s (%d rows) with %d client rows, %d steps, dealer %s%s",
                 sid.hex(), peer, name, plan.n1, plan.n0, plan.num_steps, h.dealer,
                 f", ADVERSARY {self.adversary}" if self.adversary else "",
                 extra={"event": "session_start", "session": sid.hex(), "peer": peer, "method": METHOD})
        why = "crashed"
        try:
            res = run_party(1, tr, pre, plan, Xq, Yq, sid, reveal=h.reveal, hooks=get_hooks(self.adversary))
            why = (f"done: {res.steps} steps, {res.bytes_sent} bytes sent, {res.rounds} rounds"
                   + ("" if res.theta is None else f", model {res.theta}"))
        except MpcOverflow as e:
            why = f"stopped: {e}"
        except MpcAbort as e:
            why = f"aborted: {e}"
        except InputError as e:
            why = f"refused its own data: {e}"
            tr.send_proto(mpc_pb2.MpcFrame(abort=f"the trainer's data do not fit this configuration: {e}"))
        finally:
            pre.close()
            log.info("two-party session %s %s", sid.hex(), why,
                     extra={"event": "session_end", "session": sid.hex(), "peer": peer, "method": METHOD,
                            "reason": why})


def _refused(peer: str, reason: str) -> str:
    """Log a refused two-party session (one line, with the peer: the trainer's log of refusals) -> the reason."""
    log.info("refused %s peer=%s reason=%s", METHOD, peer, reason,
             extra={"event": "refused", "method": METHOD, "peer": peer, "reason": reason})
    return reason


def add_two_party_service(server, datasets: Datasets, dealers: list[str], adversary: str | None,
                          dealer_tls_ca: bytes | None) -> None:
    """A two-party session takes one of the trainer's session slots (global and per client address,
    prover/admission.py) for as long as it runs, besides this service's own cap of MAX_SESSIONS."""
    admission = getattr(getattr(server, "manager", None), "admission", None)
    mpc_pb2_grpc.add_TwoPartyTrainingServicer_to_server(
        TwoPartyServicer(datasets, dealers, adversary, dealer_tls_ca, admission), server)
