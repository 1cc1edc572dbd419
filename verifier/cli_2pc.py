"""``train-2pc``: two-party secure training with a trainer's own dataset (docs/MPC.md).

Exit codes: 0 trained, 1 aborted (the trainer or the dealer deviated, or the trainer stopped the session),
2 usage, input, overflow or connection error (the trainer or the dealer unreachable). No model is written unless every opened value passed the MAC check.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from protocol import model_file
from protocol.errors import InputError
from protocol.fileio import ensure_parent
from protocol.fixedpoint import dyadic
from protocol.training import TrainConfig

from .cli import EXIT_OK, EXIT_REJECTED, CliError
from .cli_2pc_rows import Rows

GUARANTEE = ("the model is protocol.training's fixed-point step run on the union of both parties' rows with "
             "randomness from both (coin toss), bit for bit; every opened value passed the MAC check. This holds "
             "if the dealer does not collude with the trainer. No cryptography detects false data brought by "
             "either party.")


def add_parser(sub) -> None:
    t = sub.add_parser("train-2pc", help="train on your rows and the trainer's own dataset by two-party secure "
                       "computation (neither sees the other's rows)")
    t.add_argument("--server", required=True, help="HOST:PORT of a vtrain-prover serving --dataset")
    t.add_argument("--trainer-data", required=True, metavar="NAME", help="the trainer's dataset to train with")
    t.add_argument("--dealer", required=True, help="HOST:PORT of a vtrain-dealer (trusted not to collude)")
    t.add_argument("--data", help="your rows: PATH.csv or builtin:NAME (default: none). Without it, or with a "
                   "header-only CSV, you hold no rows: the model is trained on the trainer's rows alone, with the "
                   "schema and the standardization of its dataset (docs/MPC.md section 1)")
    t.add_argument("--target", help="target column (default for builtin data: its label column; without --data: "
                   "checked against the trainer's dataset)")
    t.add_argument("--model", required=True, choices=("linear",), help="linear regression (exact; see docs/MPC.md)")
    t.add_argument("--epochs", type=int, default=2, help="default %(default)s")
    t.add_argument("--batch-size", type=int, default=32, help="a power of two (default %(default)s)")
    t.add_argument("--lr", type=float, default=0.02, help="rounded to a multiple of 2^-lr_shift (default %(default)s)")
    t.add_argument("--lr-shift", type=int, default=10,
                   help="learning-rate resolution: the rate is an integer multiple of 2^-LR_SHIFT")
    t.add_argument("--l2", type=float, default=0.0, help="L2 penalty, rounded to a multiple of 2^-frac_bits")
    t.add_argument("--frac-bits", type=int, default=16, help="fixed point: fractional bits of every value")
    t.add_argument("--weight-bits", type=int, default=32,
                   help="fixed point: values must stay below 2^(WEIGHT_BITS-1)")
    t.add_argument("--reveal", choices=("both", "client"), default="both",
                   help="who learns the model: both parties (default) or the client only")
    t.add_argument("--tls-ca", help="PEM CA certificate: connect to the trainer with TLS (default: plaintext)")
    t.add_argument("--dealer-tls-ca", help="PEM CA certificate: connect to the dealer with TLS (default: plaintext)")
    t.add_argument("--timeout", type=float, default=600.0, help="seconds of silence before giving up (default %(default)s)")
    t.add_argument("--model-out", required=True, help="model JSON path")
    t.add_argument("--json", action="store_true", help="machine-readable result on stdout")


def _config(args) -> TrainConfig:
    lr_num = dyadic(args.lr, args.lr_shift, "--lr")
    if lr_num < 1:
        raise InputError(f"--lr {args.lr} rounds to 0 at resolution 2^-{args.lr_shift}")
    return TrainConfig(model=args.model, epochs=args.epochs, batch_size=args.batch_size, lr_num=lr_num,
                       lr_shift=args.lr_shift, l2_num=dyadic(args.l2, args.frac_bits, "--l2"),
                       frac_bits=args.frac_bits, weight_bits=args.weight_bits).validate()


def _read(path: str | None, flag: str) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise InputError(f"cannot read {flag} {path}: {e.strerror}") from e


def _bar(enabled: bool):
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm

    state = {}

    def update(t, total):
        if "bar" not in state:
            state["bar"] = tqdm(total=total, unit="step", desc="secure training", file=sys.stderr, leave=False)
        state["bar"].n = t
        state["bar"].refresh()

    return update, lambda: state["bar"].close() if "bar" in state else None


def cmd_train_2pc(args) -> int:
    import grpc  # here, not at the top: `vtrain-verifier audit` and `predict` need no gRPC (their memory)

    from dealer.client import DealerPreprocessing
    from mpc.errors import MpcAbort, MpcOverflow, MpcUnavailable, peer_text
    from mpc.plan import Plan
    from mpc.secure_training import run_party
    from mpc.transport import ClientTransport
    from protocol.wire import mpc_pb2, mpc_pb2_grpc
    from prover.mpc_servicer import config_to_proto, session_id_of

    cfg = _config(args)
    ensure_parent(args.model_out)  # refused before the secure session, not after it
    mine = Rows.load(args.data, args.target, cfg)
    tls_ca, dealer_ca = _read(args.tls_ca, "--tls-ca"), _read(args.dealer_tls_ca, "--dealer-tls-ca")
    opts = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
    channel = (grpc.secure_channel(args.server, grpc.ssl_channel_credentials(tls_ca), options=opts) if tls_ca
               else grpc.insecure_channel(args.server, options=opts))
    try:
        grpc.channel_ready_future(channel).result(timeout=min(args.timeout, 15))
    except grpc.FutureTimeoutError:
        raise CliError(f"cannot connect to the trainer at {args.server} (is `vtrain-prover serve` running there?)") from None
    nonce = os.urandom(32)
    hello = mpc_pb2.MpcHello(dataset=args.trainer_data, config=config_to_proto(cfg), client_nonce=nonce,
                             client_rows=mine.n, dealer=args.dealer, reveal=args.reveal, **mine.hello_fields())
    tr = ClientTransport(mpc_pb2_grpc.TwoPartyTrainingStub(channel), args.timeout)
    progress, close_bar = _bar(sys.stderr.isatty() and not args.json)
    t0 = time.perf_counter()
    pre = None
    try:
        tr.send_proto(mpc_pb2.MpcFrame(hello=hello))
        reply = tr.recv_proto()
        if reply.abort:
            raise CliError(f"the trainer at {args.server} refused the session: {peer_text(reply.abort)}")
        if len(reply.hello_reply.trainer_nonce) != 32:
            raise CliError("the trainer's reply is malformed (no 32-byte nonce)")
        sid = session_id_of(nonce, bytes(reply.hello_reply.trainer_nonce))
        schema = mine.settle(reply.hello_reply, args)  # before any dealer material is drawn
        plan = Plan.build(mine.n, int(reply.hello_reply.trainer_rows), len(schema.feature_names), cfg)
        pre = DealerPreprocessing(args.dealer, sid, 0, plan, dealer_ca, timeout=args.timeout)
        res = run_party(0, tr, pre, plan, mine.Xq, mine.Yq, sid, reveal=args.reveal, progress=progress)
    except MpcUnavailable as e:
        raise CliError(str(e)) from None
    except MpcAbort as e:
        close_bar()
        return _aborted(args, str(e))
    except MpcOverflow as e:
        raise CliError(str(e)) from None
    finally:
        close_bar()
        tr.close()
        if pre is not None:
            pre.close()
        channel.close()
    wall = time.perf_counter() - t0
    stdz = schema.stdz
    doc = model_file.build(kind=cfg.model, feature_names=schema.feature_names, target=schema.target, stdz=stdz,
                           frac_bits=cfg.frac_bits, theta=res.theta, transcript_sha256="",
                           verification={"status": "unverified", "check": "two-party",
                                         "reason": "trained by two-party secure computation; " + GUARANTEE})
    model_file.save(args.model_out, doc)
    result = {"status": "trained", "check": "two-party", "guarantee": GUARANTEE, "model_out": args.model_out,
              "client_rows": plan.n0, "trainer_rows": plan.n1, "standardization_from": schema.stdz_from,
              "steps": res.steps, "reveal": args.reveal,
              "bytes_sent": res.bytes_sent, "bytes_received": res.bytes_received, "rounds": res.rounds,
              "dealer_bytes": pre.bytes_received, "seconds": round(wall, 3),
              "seconds_preprocessing": round(res.seconds_preprocessing, 3),
              "session_id": sid.hex(), "data_root": res.data_root.hex(), "training_seed": res.training_seed.hex()}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"TRAINED (two-party secure computation): {res.steps} steps on {plan.n0} + {plan.n1} rows (yours + "
              f"the trainer's; the {schema.stdz_from}'s standardization); {GUARANTEE}")
        print(f"sent {res.bytes_sent / 1e6:.2f} MB, received {res.bytes_received / 1e6:.2f} MB in {res.rounds} rounds; "
              f"dealer {pre.bytes_received / 1e6:.2f} MB; {wall:.1f} s ({res.seconds_preprocessing:.1f} s waiting "
              f"for preprocessing); model written to {args.model_out}")
    return EXIT_OK


def _aborted(args, reason: str) -> int:
    msg = f"ABORTED: {reason}. No model was produced."
    if args.json:
        print(json.dumps({"status": "aborted", "reason": reason}))
    else:
        print(msg)
    return EXIT_REJECTED


