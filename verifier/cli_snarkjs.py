"""``export-snarkjs``: the SNARK of a transcript in snarkjs's formats (verification_key.json, proof.json,
public.json; with the data also circuit.r1cs and witness.wtns), for `snarkjs groth16 verify`."""

from __future__ import annotations

import json
from pathlib import Path

from protocol import transcript as tx
from protocol.dataset import Standardization, load_table, quantized_rows
from protocol.errors import InputError, TranscriptFormatError
from protocol.fileio import ensure_folder, write_atomic
from protocol.prg import SeedContext
from protocol.snark import session as snark_session
from protocol.snark import snarkjs_io
from protocol.training import Schedule, TrainConfig

from .cli import EXIT_OK


def cmd_export(args) -> int:
    tr, _ = tx.load(args.transcript)
    if tr.get("proof_kind") != "snark" or not isinstance(tr.get("proof"), dict) or "proof" not in tr["proof"]:
        raise InputError(f"{args.transcript} holds no SNARK proof (proof kind {tr.get('proof_kind')!r})")
    if args.data and "trainer_data" in tr:
        raise InputError("this SNARK is of training on the trainer's own rows: there is no data of yours to build the "
                         "witness from (export without --data: the proof files)")
    out = Path(args.out)
    ensure_folder(out, "--out folder")
    files = {"verification_key.json": tx.get(tr, "proof.vk", dict), "proof.json": tx.get(tr, "proof.proof", dict),
             "public.json": tx.get(tr, "proof.public", list)}
    for name, obj in files.items():
        write_atomic(out / name, json.dumps(obj, indent=1) + "\n")
    written = list(files)
    if args.data:
        meta = tx.get(tr, "client.metadata", dict)
        try:
            stdz = Standardization.from_dict(tx.get(meta, "standardization", dict))
            cfg = TrainConfig.from_dict(tx.get(tr, "config", dict))
        except InputError as e:
            raise TranscriptFormatError(str(e)) from None
        table = load_table(args.data, args.target or meta.get("target"))
        rows = quantized_rows(table, stdz, cfg.frac_bits)
        sid, root = tx.get_hex(tr, "session_id", 16), tx.get_hex(tr, "data_root", 32)
        sched = Schedule(SeedContext(sid, root, tx.get_hex(tr, "training_seed", 32)), cfg, *rows[:, :-1].shape)
        binding = snark_session.session_binding(tx.get_signed(tr, "statements.session")[0])
        cs, witness, public = snark_session.build(rows[:, :-1], rows[:, -1], sched, cfg,
                                                  [int(v) for v in sched.initial_state()], binding)
        if snarkjs_io.public_to_json(public) != files["public.json"]:
            raise InputError("the data given does not reproduce the transcript's public inputs (other data or "
                             "a dishonest model)")
        write_atomic(out / "circuit.r1cs", snarkjs_io.r1cs_to_bytes(cs))
        write_atomic(out / "witness.wtns", snarkjs_io.wtns_to_bytes(witness))
        written += ["circuit.r1cs", "witness.wtns"]
    if args.json:
        print(json.dumps({"status": "ok", "out": str(out), "files": written}))
    else:
        print(f"wrote {', '.join(written)} to {out}/")
        print(f"check with: snarkjs groth16 verify {out}/verification_key.json {out}/public.json {out}/proof.json")
    return EXIT_OK
