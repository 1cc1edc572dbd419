"""The trainer's per-step commitments (prover/trainer.py run_training): the state leaves it streams, each
checkpoint's leaf and prefix root, and the final state root are exactly the per-step definitions of
docs/PROTOCOL.md (state_leaf(t, theta_t) for every t, the root of leaves 0..t), whatever the checkpoint interval
and however the leaves are batched into events."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.keys import public_bytes
from protocol.merkle import MerkleTree, state_leaf
from protocol.prg import SeedContext
from protocol.statements import verify
from protocol.training import TrainConfig, train_honest
from prover.adversaries import Honest
from prover.trainer import FinalEvent, LeavesEvent, SignedEvent, run_training


def _run(interval: int, leaf_fn=None, n: int = 200, d: int = 3, progress_every: float = 0.2):
    rng = np.random.default_rng(interval)
    X = rng.integers(-(1 << 16), 1 << 16, size=(n, d), dtype=np.int64)
    Y = rng.integers(0, 1 << 16, size=n, dtype=np.int64)
    cfg = TrainConfig(model="logistic", epochs=2, batch_size=8, checkpoint_interval=interval).validate()
    ctx = SeedContext(b"s" * 16, b"r" * 32, b"t" * 32)
    key, record = Ed25519PrivateKey.generate(), {}
    events = list(run_training(key=key, session_id=ctx.session_id, X=X, Y=Y, cfg=cfg, ctx=ctx, strategy=Honest(),
                               record=record, leaf_fn=leaf_fn, progress_every=progress_every))
    thetas = [theta for _t, _e, theta, _r in train_honest(X, Y, cfg, ctx)]
    return events, record["result"], thetas, public_bytes(key), ctx.session_id


@pytest.mark.parametrize("interval", [1, 3, 7, 64, 1000])
@pytest.mark.parametrize("progress_every", [0.0, 10.0])
def test_leaves_checkpoints_and_root_follow_the_per_step_definition(interval, progress_every):
    events, rec, thetas, pub, sid = _run(interval, progress_every=progress_every)
    T = len(thetas) - 1
    want = [state_leaf(t, thetas[t]) for t in range(T + 1)]
    got, checkpoints = bytearray(), []
    for ev in events:
        if isinstance(ev, LeavesEvent):
            assert ev.first_step == len(got) // 32  # contiguous, in order, none twice
            got += ev.hashes
        elif isinstance(ev, SignedEvent):
            st = verify(pub, ev.statement, ev.signature, kind="checkpoint", session_id=sid)
            t = st.fields["step"]
            assert len(got) >= 32 * (t + 1)  # the leaves a checkpoint signs are sent before it
            assert st.fields["state_leaf"] == want[t]
            assert st.fields["prefix_root"] == MerkleTree(want[:t + 1]).root
            checkpoints.append(t)
    assert bytes(got) == b"".join(want)
    assert checkpoints == list(range(interval, T + 1, interval))
    final = events[-1]
    assert isinstance(final, FinalEvent)
    st = verify(pub, final.statement, final.signature, kind="final", session_id=sid)
    assert st.fields["state_root"] == MerkleTree(want).root == rec.tree.root
    assert np.array_equal(rec.states, np.array(thetas))


def test_a_custom_leaf_function_is_applied_to_every_stored_state():
    seen = []

    def leaf_fn(t, theta):
        seen.append(t)
        return state_leaf(t, theta)[::-1]  # any other leaf: the trainer must use it for every step

    events, _rec, thetas, pub, sid = _run(5, leaf_fn=leaf_fn)
    want = [state_leaf(t, thetas[t])[::-1] for t in range(len(thetas))]
    got = b"".join(ev.hashes for ev in events if isinstance(ev, LeavesEvent))
    assert got == b"".join(want) and seen == list(range(len(thetas)))
    for ev in events:
        if isinstance(ev, SignedEvent):
            st = verify(pub, ev.statement, ev.signature, kind="checkpoint", session_id=sid)
            assert st.fields["prefix_root"] == MerkleTree(want[:st.fields["step"] + 1]).root
