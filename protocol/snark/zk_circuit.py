"""The zero-knowledge circuit: T training steps on the provider's PRIVATE, committed dataset.

Statement (docs/SNARK.md section 8): *there are a dataset (X, Y) of n rows x d features with every value
in [-2^(K-1), 2^(K-1)) and a blinding element rho such that commitment = Poseidon-sponge(rho, packed
rows), and T steps of the protocol's linear-regression step on the rows at the (public, seed-derived)
batch indices, from theta_0, end in theta_T.*

Wires (circom order): outputs theta_T (d+1); public inputs theta_0 (d+1), binding, commitment; private
inputs rho, then the data row-major (X[i][0..d-1], Y[i] for i = 0..n-1); then internal wires: the range
gadgets of the data, the Poseidon sponge, then the steps (``sgd_circuit.append_steps`` with data LCs).

Constraints: n (d+1) (K+1) for the ranges, ``permutation_cost()`` per sponge permutation
(ceil((1 + ceil(n (d+1) / pack)) / 2) permutations, pack = floor(253 / K)), and per step the client-data
count plus 2 B d products (``constraint_count``).

No wrap-around: the data are range-checked to K bits in the circuit, so every dividend bound of
sgd_circuit.rounding_bound holds with |X|, |Y| < 2^(K-1) for ANY data (``worst_case_bound``), and the
floor-gadget lemma of docs/SNARK.md section 3.1 applies to every satisfying assignment.
"""

from __future__ import annotations

from .field import R, from_signed, to_signed
from .gadgets import check_no_wrap, floor_div_pow2, materialize_into
from .poseidon import PACK_BITS, RATE, commit, flatten_rows, pack_width
from .poseidon_gadget import permutation_cost, sponge_gadget
from .r1cs import LC, R1CS
from .sgd_circuit import CircuitConfig, append_steps, reference_sgd
from .sgd_circuit import constraint_count as step_constraints

__all__ = [
    "build_private_circuit",
    "constraint_breakdown",
    "decode_private_public",
    "encode_private_public",
    "worst_case_bound",
]


def worst_case_bound(d: int, cfg) -> int:
    """The largest a-priori |dividend| of any rounding for any data in the K-bit range."""
    cfg = CircuitConfig.coerce(cfg)
    f, U, B, half = cfg.frac_bits, cfg.update_shift, cfg.batch_size, 1 << (cfg.weight_bits - 1)
    a = (d * half + (1 << f)) * half
    resid = 2 * half  # |z_i - Y[i]|
    e_w = abs((1 << U) - cfg.lr_num * cfg.l2_num * B) * half + cfg.lr_num * B * resid * half
    e_b = (1 << U) * half + cfg.lr_num * (1 << f) * B * resid
    return max(a, e_w, e_b)


def _check_shape(n: int, d: int, sched, cfg: CircuitConfig) -> list[list[int]]:
    if n < 1 or d < 1:
        raise ValueError(f"need at least one row and one feature, got n = {n}, d = {d}")
    check_no_wrap(worst_case_bound(d, cfg), "a rounded dividend (worst case over K-bit data)")
    out = []
    for t, batch in enumerate(sched):
        batch = [int(i) for i in batch]
        if len(batch) != cfg.batch_size or any(not 0 <= i < n for i in batch):
            raise ValueError(f"schedule[{t}] must hold {cfg.batch_size} row indices in 0..{n - 1}")
        out.append(batch)
    if not out:
        raise ValueError("the schedule must contain at least one step")
    return out


def constraint_breakdown(n: int, d: int, cfg, steps: int) -> dict:
    """Constraint counts by part: data ranges, commitment, steps; and per data element / per step."""
    cfg = CircuitConfig.coerce(cfg)
    values = n * (d + 1)
    elems = 1 + -(-values // pack_width(cfg.weight_bits))
    perms = -(-elems // RATE)
    ranges = values * (cfg.weight_bits + 1)
    sponge = perms * permutation_cost() + 1  # + the commitment output
    per_step = step_constraints(d, cfg, 1) + 2 * cfg.batch_size * d
    return {"ranges": ranges, "commitment": sponge, "permutations": perms, "steps": per_step * steps,
            "total": ranges + sponge + per_step * steps, "per_data_element": (ranges + sponge) / values,
            "per_step": per_step, "data_elements": values}


def build_private_circuit(n: int, d: int, schedule, cfg, *, X=None, Y=None, theta0=None, binding=None,
                          blinding=None):
    """-> (r1cs, witness, public). Without X, Y, theta0, binding, blinding: constraints only (the
    client's setup; they do not depend on the data). With them (the provider): the witness, checked
    against ``reference_sgd`` (the protocol's step) and the native commitment."""
    cfg = CircuitConfig.coerce(cfg)
    sched = _check_shape(n, d, schedule, cfg)
    given = [v is not None for v in (X, Y, theta0, binding, blinding)]
    if any(given) and not all(given):
        raise ValueError("give X, Y, theta0, binding and blinding (to get a witness) or none of them")
    K = cfg.weight_bits
    trace = com = None
    if all(given):
        if len(X) != n or len(Y) != n or any(len(row) != d for row in X):
            raise ValueError(f"the dataset must have {n} rows of {d} features and {n} targets")
        for v, what in ((binding, "binding"), (blinding, "blinding")):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < R:
                raise ValueError(f"{what} must be an int in [0, r)")
        com = commit(X, Y, blinding, K)  # also range-checks every value (ValueError)
        trace = reference_sgd(X, Y, sched, theta0, cfg)
    cs = R1CS()
    out_wires = [cs.public_output(f"theta_T[{j}]") for j in range(d + 1)]
    theta = [LC.term(cs.public_input(f"theta_0[{j}]", None if trace is None else trace[0][j])) for j in range(d + 1)]
    cs.public_input("binding", binding)
    com_wire = cs.public_input("commitment", com)
    rho = cs.private_input("blinding", blinding)
    flat = flatten_rows(X, Y) if trace is not None else [None] * (n * (d + 1))
    data = [cs.private_input(f"data[{i // (d + 1)}][{i % (d + 1)}]", v) for i, v in enumerate(flat)]
    half, per = 1 << (K - 1), pack_width(K)
    assert per * K <= PACK_BITS
    for i, w in enumerate(data):  # |value| < 2^(K-1): the floor gadget with shift 0 decomposes value + 2^(K-1)
        floor_div_pow2(cs, LC.term(w), 0, K, f"range[{i}]")
    packed = []
    for g in range(0, len(data), per):
        lc = LC()
        for k, w in enumerate(data[g:g + per]):
            lc.add_term(w, 1 << (K * k)).add_term(0, half << (K * k))
        packed.append(lc)
    materialize_into(cs, sponge_gadget(cs, [LC.term(rho)] + packed, "commit"), com_wire, "commitment")
    rows = [[LC.term(w) for w in data[i * (d + 1):(i + 1) * (d + 1)]] for i in range(n)]
    append_steps(cs, theta, [r[:d] for r in rows], [r[d] for r in rows], sched, cfg, out_wires)
    if trace is None:
        return cs, None, None
    witness = cs.witness()
    public = cs.public_values(witness)
    if [to_signed(v) for v in public[:d + 1]] != trace[-1] or public[-1] != com:
        raise AssertionError("circuit output differs from the reference (internal error)")
    return cs, witness, public


def encode_private_public(theta_T, theta0, binding: int, commitment: int) -> list[int]:
    """[theta_T..., theta_0..., binding, commitment], signed values as v mod r."""
    return [from_signed(int(v)) for v in theta_T] + [from_signed(int(v)) for v in theta0] + [binding, commitment]


def decode_private_public(public, d: int, weight_bits: int):
    """Inverse of encode_private_public (parameters range-checked): (theta_T, theta_0, binding, commitment)."""
    from .sgd_circuit import decode_public_inputs

    public = list(public)
    if len(public) != 2 * (d + 1) + 2:
        raise ValueError(f"expected {2 * (d + 1) + 2} public inputs for d = {d}, got {len(public)}")
    theta_T, theta0, binding = decode_public_inputs(public[:-1], d, weight_bits)
    com = public[-1]
    if isinstance(com, bool) or not isinstance(com, int) or not 0 <= com < R:
        raise ValueError("the commitment must be an int in [0, r)")
    return theta_T, theta0, binding, com
