"""The protocol PRG (protocol/prg.py): keys, ChaCha20 stream, unbiased integers, shuffles, challenges.

Statistical tests reject at p < ALPHA = 1e-6 (tests/helpers.py): if the code is right, each fails with
probability 1e-6; all inputs are fixed, so outcomes are reproducible run to run.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import struct

import numpy as np
import pytest
from helpers import ALPHA, chi_square_pvalue, load_vectors, seed_context
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import prg
from protocol.prg import (
    KeyStream,
    SeedContext,
    challenge_steps,
    initial_parameters,
    seed_commitment,
    shuffle,
    uniform_below,
)

V = load_vectors("prg")
SID, ROOT, SEED = (bytes.fromhex(V[k]) for k in ("session_id", "data_root", "training_seed"))
STATE_ROOT, AUDIT_SEED = bytes.fromhex(V["state_root"]), bytes.fromhex(V["audit_seed"])
CTX = SeedContext(SID, ROOT, SEED)


def _sha_tagged(tag: str, *parts: bytes) -> bytes:
    """Independent re-implementation of docs/PROTOCOL.md section 3's H(tag, parts...)."""
    t = b"vtrain/v1/" + tag.encode()
    return hashlib.sha256(bytes([len(t)]) + t + b"".join(parts)).digest()


def _ref_uniform_below(key: bytes, count: int, m: int) -> list[int]:
    """docs/PROTOCOL.md section 6 on Python ints: batches of c + c//8 + 4 words, keep w < floor(2^64/m)*m."""
    return _ref_uniform_below_stream(KeyStream(key), count, m)


# -- known answers ----------------------------------------------------------------------------------------

def test_chacha20_rfc8439_keystream():
    """RFC 8439 appendix A.1 test vector #1: key 0, nonce 0, block counter 0."""
    want = ("76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7"
            "da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586")
    assert KeyStream(bytes(32)).read(64).hex() == want
    s = KeyStream(bytes(32))
    assert (s.read(10) + s.read(54)).hex() == want  # sequential reads continue the stream
    assert KeyStream(bytes(range(32))).read(64).hex() == V["keystream_first_64_bytes"]


def test_keys_match_the_specification():
    assert CTX.init_key() == _sha_tagged("prg/init", SID, ROOT, SEED) == bytes.fromhex(V["init_key"])
    assert CTX.epoch_key(0, 0) == _sha_tagged("prg/shuffle", SID, ROOT, SEED, struct.pack(">QI", 0, 0))
    assert CTX.epoch_key(0, 0).hex() == V["epoch_key_0_0"] and CTX.epoch_key(3, 1).hex() == V["epoch_key_3_1"]
    assert seed_commitment(AUDIT_SEED, SID) == _sha_tagged("seed/commit", SID, AUDIT_SEED)
    assert seed_commitment(AUDIT_SEED, SID).hex() == V["seed_commitment"]


def test_shuffle_kat():
    for case in V["shuffle"]:
        assert shuffle(CTX, case["epoch"], case["n"]).tolist() == case["perm"], case


def test_shuffle_is_stable_argsort_of_epoch_words():
    """Specification check independent of numpy: item order by increasing 64-bit key."""
    for epoch, n in ((0, 10), (5, 64)):
        raw = KeyStream(_sha_tagged("prg/shuffle", SID, ROOT, SEED, struct.pack(">QI", epoch, 0))).read(8 * n)
        keys = struct.unpack(f"<{n}Q", raw)
        assert shuffle(CTX, epoch, n).tolist() == sorted(range(n), key=lambda i: (keys[i], i))


def test_initial_parameters_kat_and_spec():
    for case in V["initial_parameters"]:
        got = initial_parameters(CTX, case["count"], case["frac_bits"])
        assert got.dtype == np.int64 and got.tolist() == case["values"], case
    f = 16
    half = 2 ** (f - 6)
    ref = [u - half for u in _ref_uniform_below(CTX.init_key(), 7, 2 ** (f - 5) + 1)]
    assert initial_parameters(CTX, 7, f).tolist() == ref


@pytest.mark.parametrize("f", (6, 16, 30))
def test_initial_parameters_range(f):
    vals = initial_parameters(seed_context(9, 9, 9), 4000, f)
    half = 2 ** (f - 6)
    assert vals.min() >= -half and vals.max() <= half
    if f == 6:  # m = 3: all three values appear (each missed with probability (2/3)^4000)
        assert set(vals.tolist()) == {-1, 0, 1}


def test_challenge_steps_kat():
    for case in V["challenge_steps"]:
        got = challenge_steps(SID, STATE_ROOT, AUDIT_SEED, case["k"], case["num_steps"])
        assert got == case["steps"], case


def test_uniform_below_kat_and_reference():
    key = bytes.fromhex(V["keystream_key"])
    for case in V["uniform_below"]:
        got = uniform_below(KeyStream(key), case["count"], case["m"])
        assert got.dtype == np.int64 and got.tolist() == case["values"], case
        assert got.tolist() == _ref_uniform_below(key, case["count"], case["m"])


# -- reproducibility and binding ------------------------------------------------------------------------

def test_shuffle_reproducible_and_bound_to_every_input():
    """n = 50: two independent uniform permutations coincide with probability 1/50! (negligible)."""
    n = 50
    base = shuffle(CTX, 0, n)
    assert np.array_equal(base, shuffle(SeedContext(SID, ROOT, SEED), 0, n))
    variants = {
        "session": SeedContext(SID[:-1] + b"\xff", ROOT, SEED),
        "longer session": SeedContext(SID + b"\x00", ROOT, SEED),
        "data root": SeedContext(SID, ROOT[:-1] + bytes([ROOT[-1] ^ 1]), SEED),
        "seed": SeedContext(SID, ROOT, bytes([SEED[0] ^ 0x80]) + SEED[1:]),
    }
    for name, ctx in variants.items():
        assert not np.array_equal(shuffle(ctx, 0, n), base), name
        assert not np.array_equal(initial_parameters(ctx, 8, 16), initial_parameters(CTX, 8, 16)), name
    perms = [shuffle(CTX, e, n).tolist() for e in range(20)]
    assert len({tuple(p) for p in perms}) == 20  # every epoch differs


@settings(max_examples=60, deadline=None, derandomize=True)
@given(n=st.integers(0, 300), epoch=st.integers(0, 2**64 - 1))
def test_shuffle_is_a_permutation(n, epoch):
    p = shuffle(CTX, epoch, n)
    assert p.dtype == np.int64 and sorted(p.tolist()) == list(range(n))


def test_seed_context_validation():
    with pytest.raises(ValueError, match="training seed must be 32 bytes"):
        SeedContext(SID, ROOT, SEED[:31])
    with pytest.raises(ValueError, match="data root must be 32 bytes"):
        SeedContext(SID, ROOT + b"\x00", SEED)
    with pytest.raises(ValueError, match="PRG key must be 32 bytes"):
        KeyStream(bytes(31))
    with pytest.raises(ValueError, match="audit seed must be 32 bytes"):
        seed_commitment(bytes(16), SID)
    with pytest.raises(ValueError):
        CTX.epoch_key(-1)
    with pytest.raises(ValueError):
        CTX.epoch_key(2**64)


# -- the rejection path of the shuffle ------------------------------------------------------------------

def test_shuffle_tie_redraws_with_next_attempt(monkeypatch):
    """Force one tie among the keys: the shuffle must redraw from epoch key (e, attempt=1)."""
    n, epoch = 12, 4
    real_words = KeyStream.words
    calls = []

    def tied_once(self, count):
        w = real_words(self, count).copy()
        if not calls:
            w[3] = w[7]  # a duplicate key
        calls.append(count)
        return w

    monkeypatch.setattr(KeyStream, "words", tied_once)
    got = shuffle(CTX, epoch, n)
    monkeypatch.setattr(KeyStream, "words", real_words)
    assert len(calls) == 2
    keys = KeyStream(CTX.epoch_key(epoch, 1)).words(n)
    assert got.tolist() == np.argsort(keys, kind="stable").tolist()
    assert got.tolist() != prg._shuffle(CTX, epoch, n).tolist()  # attempt 0's own order is not used (uncached)


def test_the_remembered_shuffle_is_the_one_asked_for_and_read_only():
    """prg.shuffle remembers its last permutation: asked again for the same (context, epoch, n) it is the same
    array, read-only (no caller can change what the next caller gets); any other input is computed afresh."""
    a = shuffle(CTX, 2, 50)
    assert shuffle(CTX, 2, 50) is a and not a.flags.writeable
    with pytest.raises(ValueError):
        a[0] = a[1]
    for args in ((CTX, 3, 50), (CTX, 2, 51), (SeedContext(SID, ROOT, bytes(32)), 2, 50)):
        other = shuffle(*args)
        assert other is not a and other.tolist() == prg._shuffle(*args).tolist() != a.tolist()
    assert shuffle(CTX, 2, 50).tolist() == prg._shuffle(CTX, 2, 50).tolist()


def test_shuffle_persistent_ties_keep_redrawing(monkeypatch):
    real_words = KeyStream.words
    calls = []

    def tied_thrice(self, count):
        w = real_words(self, count).copy()
        if len(calls) < 3:
            w[:] = 5
        calls.append(count)
        return w

    monkeypatch.setattr(KeyStream, "words", tied_thrice)
    got = shuffle(CTX, 0, 6)
    monkeypatch.setattr(KeyStream, "words", real_words)
    assert len(calls) == 4
    assert got.tolist() == np.argsort(KeyStream(CTX.epoch_key(0, 3)).words(6), kind="stable").tolist()


# -- unbiasedness -----------------------------------------------------------------------------------------

def test_shuffle_position_of_item_zero_is_uniform():
    """n = 5, 6000 epochs: position of item 0 ~ uniform on 5 cells (chi-square, reject at p < 1e-6)."""
    n, epochs = 5, 6000
    ctx = seed_context(4, 5, 6)
    counts = np.zeros(n)
    for e in range(epochs):
        counts[int(np.flatnonzero(shuffle(ctx, e, n) == 0)[0])] += 1
    assert chi_square_pvalue(counts) > ALPHA, counts


def test_shuffle_all_orders_equally_likely():
    """n = 4, 9600 epochs: each of the 24 orders (hence every pair of positions) equally likely, and the
    pair (position of item 0, position of item 1) uniform on its 12 cells. Each test fails with
    probability 1e-6 if the shuffle is uniform."""
    n, epochs = 4, 9600
    ctx = seed_context(7, 8, 9)
    index = {p: i for i, p in enumerate(itertools.permutations(range(n)))}
    counts = np.zeros(math.factorial(n))
    pairs = np.zeros((n, n))
    for e in range(epochs):
        p = shuffle(ctx, e, n).tolist()
        counts[index[tuple(p)]] += 1
        pairs[p.index(0), p.index(1)] += 1
    assert chi_square_pvalue(counts) > ALPHA, counts
    assert np.all(np.diag(pairs) == 0)
    assert chi_square_pvalue(pairs[~np.eye(n, dtype=bool)]) > ALPHA, pairs


@pytest.mark.parametrize(("m", "buckets"), [(3, 3), (7, 7), (2**63 - 1, 8), (3 << 61, 6), (2**63, 8)])
def test_uniform_below_has_no_modulo_bias(m, buckets):
    """60000 draws bucketed into equal-width cells (chi-square, reject at p < 1e-6). For m = 3*2^61 the
    naive ``w mod m`` would put weight 3/16 on each of the first four sixths and 2/16 on the last two, a
    bias this test detects (checked below on the raw words of the same stream)."""
    N = 60000
    vals = uniform_below(KeyStream(hashlib.sha256(str(m).encode()).digest()), N, m)
    assert vals.min() >= 0 and vals.max() < m and vals.size == N
    cells = np.minimum((vals.astype(object) * buckets) // m, buckets - 1).astype(np.int64)
    assert chi_square_pvalue(np.bincount(cells, minlength=buckets)) > ALPHA
    if m == 3 << 61:
        naive = KeyStream(hashlib.sha256(b"naive").digest()).words(N) % np.uint64(m)
        naive_cells = (naive.astype(object) * buckets // m).astype(np.int64)
        assert chi_square_pvalue(np.bincount(naive_cells, minlength=buckets)) < ALPHA  # the test has power


def test_uniform_below_rejection_path_is_taken():
    """m = 3*2^61: a quarter of the words are >= 2*m and must be rejected, not reduced."""
    key = bytes(range(1, 33))
    m = 3 << 61
    words = KeyStream(key).words(1000)
    assert np.any(words >= np.uint64(2 * m))
    got = uniform_below(KeyStream(key), 200, m).tolist()
    expect = [int(w) % m for w in words if int(w) < 2 * m][:200]
    assert got == expect


def test_uniform_below_edge_cases():
    s = KeyStream(bytes(32))
    assert uniform_below(s, 5, 1).tolist() == [0] * 5
    assert uniform_below(s, 0, 10).size == 0
    for bad in (0, -1, 2**63 + 1):
        with pytest.raises(ValueError, match="modulus out of range"):
            uniform_below(s, 3, bad)


# -- challenges -------------------------------------------------------------------------------------------

@settings(max_examples=120, deadline=None, derandomize=True)
@given(k=st.integers(0, 80), T=st.integers(1, 60), seed=st.binary(min_size=32, max_size=32))
def test_challenge_steps_distinct_in_range_capped(k, T, seed):
    steps = challenge_steps(SID, STATE_ROOT, seed, k, T)
    assert len(steps) == min(k, T) == len(set(steps))
    assert all(1 <= s <= T for s in steps)
    if k >= T:
        assert sorted(steps) == list(range(1, T + 1))


def test_challenge_steps_follow_the_specification():
    """docs/PROTOCOL.md section 6: c = min(K, T); draw uniform below T in batches of c from the challenge
    stream (each batch is one uniform_below call: its unused accepted words are discarded), v -> v+1, skip
    repeats, stop at c (the rest of the batch is discarded). K > T draws batches of T, not K."""
    for k, T in ((5, 7), (30, 31), (3, 2**40), (50, 20), (64, 34), (7, 1)):
        c = min(k, T)
        key = _sha_tagged("prg/challenge", SID, STATE_ROOT, AUDIT_SEED)
        stream, chosen = KeyStream(key), []
        while len(chosen) < c:
            for v in _ref_uniform_below_stream(stream, c, T):
                if int(v) + 1 not in chosen and len(chosen) < c:
                    chosen.append(int(v) + 1)
        assert challenge_steps(SID, STATE_ROOT, AUDIT_SEED, k, T) == chosen
    with pytest.raises(ValueError):  # T = 0 cannot occur (T >= 1 since n >= B, E >= 1) and is refused
        challenge_steps(SID, STATE_ROOT, AUDIT_SEED, 3, 0)


def _ref_uniform_below_stream(stream: KeyStream, count: int, m: int) -> list[int]:
    limit = (2**64 // m) * m
    out: list[int] = []
    while len(out) < count:
        c = count - len(out)
        raw = stream.read(8 * (c + c // 8 + 4))
        out += [w % m for w in struct.unpack(f"<{len(raw) // 8}Q", raw) if w < limit][:c]
    return out


def test_challenge_steps_bound_to_inputs():
    base = challenge_steps(SID, STATE_ROOT, AUDIT_SEED, 10, 10**6)
    assert challenge_steps(SID, STATE_ROOT, AUDIT_SEED, 10, 10**6) == base
    for args in ((SID[::-1], STATE_ROOT, AUDIT_SEED), (SID, bytes(32), AUDIT_SEED), (SID, STATE_ROOT, bytes(32))):
        assert challenge_steps(*args, 10, 10**6) != base


def test_challenge_steps_errors():
    with pytest.raises(ValueError, match="no steps"):
        challenge_steps(SID, STATE_ROOT, AUDIT_SEED, 3, 0)
    assert challenge_steps(SID, STATE_ROOT, AUDIT_SEED, 0, 5) == []


def test_challenged_pair_is_uniform():
    """T = 5, K = 2 over 5000 audit seeds: each of the C(5,2) = 10 pairs equally likely (reject at p < 1e-6)."""
    T, trials = 5, 5000
    index = {frozenset(c): i for i, c in enumerate(itertools.combinations(range(1, T + 1), 2))}
    counts = np.zeros(len(index))
    for j in range(trials):
        counts[index[frozenset(challenge_steps(SID, STATE_ROOT, j.to_bytes(32, "big"), 2, T))]] += 1
    assert chi_square_pvalue(counts) > ALPHA, counts


def test_challenge_key_inputs_are_unambiguous():
    """Fixed lengths make the concatenated key input unambiguous: shifted boundaries are refused."""
    with pytest.raises(ValueError, match="16-byte session id"):
        challenge_steps(SID + STATE_ROOT[:1], STATE_ROOT[1:], AUDIT_SEED, 8, 1000)
    with pytest.raises(ValueError):
        challenge_steps(SID, STATE_ROOT, AUDIT_SEED[:31], 8, 1000)


def test_module_has_no_global_randomness():
    """Same inputs, same outputs, after other draws in between (no hidden global state)."""
    a = (shuffle(CTX, 3, 40).tolist(), initial_parameters(CTX, 5, 16).tolist())
    uniform_below(KeyStream(bytes(32)), 100, 7)
    shuffle(CTX, 4, 40)
    assert (shuffle(CTX, 3, 40).tolist(), initial_parameters(CTX, 5, 16).tolist()) == a
