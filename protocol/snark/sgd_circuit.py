"""R1CS for T steps of the protocol's fixed-point LINEAR-regression SGD step (docs/PROTOCOL.md section 7).

The client's data X, Y and the batch schedule are circuit constants, so everything but rounding is
linear. Per step t with batch rows i (U = f + lr_shift + log2 B):

    a_i  = sum_k X[i][k] w_k + (b << f)               LC of the theta wires, no constraint
    z_i  = floor(a_i / 2^f)                           floor gadget, K-bit quotient    (f + K + 1)
    r_i  = z_i - Y[i]
    G_j  = sum_i r_i X[i][j] + l2_num w_j B  (j < d);  G_b = (sum_i r_i) << f
    theta_j' = floor(((theta_j << U) - lr_num G_j) / 2^U)   floor gadget, K bits     (U + K + 1)
    theta_j' materialised as a wire (the last step's are the public outputs)          (1)

so T * (B (f + K + 1) + (d + 1)(U + K + 2)) constraints.

Public signals (snarkjs order, outputs first): theta_T (d+1), theta_0 (d+1), binding (1), each signed
value v encoded as v mod r. theta_0 is not range-checked in the circuit: the verifier must check
theta_0 is in [-2^(K-1), 2^(K-1)) itself (`decode_public_inputs` does). The binding element enters no constraint;
the QAP's public-input rows bind it to the proof.

Range: the gadget accepts quotients in [-2^(K-1), 2^(K-1)), exactly the range protocol.training enforces.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.errors import FixedPointOverflow
from protocol.fixedpoint import in_range
from protocol.snark.errors import PublicInputRangeError
from protocol.snark.field import R, from_signed, to_signed
from protocol.snark.gadgets import (
    MAX_DIVIDEND_BITS,
    check_no_wrap,
    floor_div_pow2,
    materialize,
    materialize_into,
)
from protocol.snark.poseidon_gadget import mul
from protocol.snark.r1cs import LC, R1CS
from protocol.training import TrainConfig, step_exact

__all__ = [
    "CircuitConfig",
    "append_steps",
    "build_sgd_circuit",
    "constraint_count",
    "decode_public_inputs",
    "encode_public_inputs",
    "reference_sgd",
    "rounding_bound",
]


@dataclass(frozen=True)
class CircuitConfig:
    """The training-step parameters the circuit bakes in (a subset of protocol.training.TrainConfig)."""

    frac_bits: int = 16
    weight_bits: int = 32
    lr_num: int = 102
    lr_shift: int = 10
    l2_num: int = 0
    batch_size: int = 8

    @classmethod
    def coerce(cls, cfg) -> CircuitConfig:
        """Accept a CircuitConfig or any object with these attributes (e.g. TrainConfig, model "linear")."""
        if getattr(cfg, "model", "linear") != "linear":
            raise ValueError(f"the SGD circuit covers linear regression only, got model {cfg.model!r}")
        vals = {}
        for name in cls.__dataclass_fields__:
            v = getattr(cfg, name, None)
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"cfg.{name} must be an int, got {type(v).__name__}")
            vals[name] = v
        out = cls(**vals)
        b = out.batch_size
        if b < 1 or b & (b - 1):
            raise ValueError(f"batch size must be a power of two, got {b}")
        if out.frac_bits < 0 or out.weight_bits < 2 or out.lr_shift < 0 or out.lr_num < 1 or out.l2_num < 0:
            raise ValueError(f"invalid config {out}: need frac_bits, lr_shift, l2_num >= 0, lr_num >= 1, "
                             f"weight_bits >= 2")
        return out

    @property
    def update_shift(self) -> int:
        """U = f + lr_shift + log2 B."""
        return self.frac_bits + self.lr_shift + self.batch_size.bit_length() - 1


def _as_int(v, what: str) -> int:
    if isinstance(v, bool) or not hasattr(v, "__index__"):
        raise TypeError(f"{what} must be an integer, got {type(v).__name__}")
    return int(v)


def _validate(X, Y, schedule, theta0, cfg: CircuitConfig):
    X = [[_as_int(v, f"X[{i}]") for v in row] for i, row in enumerate(X)]
    Y = [_as_int(v, f"Y[{i}]") for i, v in enumerate(Y)]
    if not X or len(X) != len(Y):
        raise ValueError(f"need as many targets as data rows (>= 1), got {len(X)} rows and {len(Y)} targets")
    d = len(X[0])
    if any(len(row) != d for row in X):
        raise ValueError("all data rows must have the same number of features")
    sched = []
    for t, batch in enumerate(schedule):
        batch = [_as_int(i, f"schedule[{t}]") for i in batch]
        if len(batch) != cfg.batch_size:
            raise ValueError(f"schedule[{t}] has {len(batch)} rows, the batch size is {cfg.batch_size}")
        if any(not 0 <= i < len(X) for i in batch):
            raise ValueError(f"schedule[{t}] refers to a row outside 0..{len(X) - 1}")
        sched.append(batch)
    if not sched:
        raise ValueError("the schedule must contain at least one step")
    if theta0 is not None:
        theta0 = [_as_int(v, "theta0") for v in theta0]
        if len(theta0) != d + 1:
            raise ValueError(f"theta0 must have d + 1 = {d + 1} values, got {len(theta0)}")
        if not all(in_range(v, cfg.weight_bits) for v in theta0):
            raise FixedPointOverflow(f"theta0 has a value of magnitude >= 2^{cfg.weight_bits - 1}", step=0)
    return X, Y, sched, theta0


def reference_sgd(X, Y, schedule, theta0, cfg) -> list[list[int]]:
    """theta_0..theta_T by ``protocol.training.step_exact``: the one definition of the step, which the
    trainer runs, the verifier replays and this circuit must reproduce (raises FixedPointOverflow)."""
    cfg = CircuitConfig.coerce(cfg)
    X, Y, sched, theta = _validate(X, Y, schedule, theta0, cfg)
    tcfg = TrainConfig(model="linear", epochs=1, batch_size=cfg.batch_size, lr_num=cfg.lr_num,
                       lr_shift=cfg.lr_shift, l2_num=cfg.l2_num, frac_bits=cfg.frac_bits, weight_bits=cfg.weight_bits)
    out = [theta]
    for t, batch in enumerate(sched, start=1):
        theta = step_exact(theta, [X[i] for i in batch], [Y[i] for i in batch], tcfg, t)
        out.append(theta)
    return out


def rounding_bound(X, Y, schedule, cfg) -> int:
    """max over all roundings of sum|coeff| * 2^(K-1) + |constant| (brief 7.4), treating every theta and
    every rounded prediction as a K-bit value."""
    cfg = CircuitConfig.coerce(cfg)
    X, Y, sched, _ = _validate(X, Y, schedule, None, cfg)
    f, half, U, B = cfg.frac_bits, 1 << (cfg.weight_bits - 1), cfg.update_shift, cfg.batch_size
    d = len(X[0])
    worst = max((sum(abs(x) for x in row) + (1 << f)) * half for row in X)  # predictions a_i
    diag_w = abs((1 << U) - cfg.lr_num * cfg.l2_num * B)
    for batch in sched:
        for j in range(d):
            coeff = diag_w + cfg.lr_num * sum(abs(X[i][j]) for i in batch)
            const = cfg.lr_num * abs(sum(X[i][j] * Y[i] for i in batch))
            worst = max(worst, coeff * half + const)
        coeff_b = (1 << U) + cfg.lr_num * B * (1 << f)
        worst = max(worst, coeff_b * half + cfg.lr_num * (1 << f) * abs(sum(Y[i] for i in batch)))
    return worst


def constraint_count(d: int, cfg, steps: int) -> int:
    """T * (B (f + K + 1) + (d + 1)(U + K + 2))."""
    cfg = CircuitConfig.coerce(cfg)
    f, K, U, B = cfg.frac_bits, cfg.weight_bits, cfg.update_shift, cfg.batch_size
    return steps * (B * (f + K + 1) + (d + 1) * (U + K + 2))


def _check_shape_bounds(X, Y, sched, cfg: CircuitConfig) -> None:
    K = cfg.weight_bits
    for s, what in ((cfg.frac_bits, "prediction shift f"), (cfg.update_shift, "update shift U")):
        if s + K > MAX_DIVIDEND_BITS:
            raise ValueError(f"{what} + K = {s + K} exceeds {MAX_DIVIDEND_BITS}: the circuit could wrap mod r")
    check_no_wrap(rounding_bound(X, Y, sched, cfg), "a rounded dividend")


def build_sgd_circuit(X, Y, schedule, theta0, cfg, binding):
    """-> (r1cs, witness, public_inputs) for T = len(schedule) steps from theta0.

    With theta0 = binding = None only the constraints are built (witness and public_inputs are None),
    e.g. for a setup on the verifier's side: the constraints do not depend on theta0 or binding.
    """
    return _build(X, Y, schedule, theta0, cfg, binding, None)


def _build(X, Y, schedule, theta0, cfg, binding, deviation: dict | None):
    """`deviation` {(t, j): delta} (tests only) makes the witness generator lie: the materialised wire of
    parameter j after step t gets its honest value + delta, and later steps continue from the lie."""
    cfg = CircuitConfig.coerce(cfg)
    X, Y, sched, theta0 = _validate(X, Y, schedule, theta0, cfg)
    if (theta0 is None) != (binding is None):
        raise ValueError("give both theta0 and binding (to get a witness) or neither (constraints only)")
    if binding is not None and (isinstance(binding, bool) or not isinstance(binding, int) or not 0 <= binding < R):
        raise ValueError("binding must be an int in [0, r)")
    _check_shape_bounds(X, Y, sched, cfg)
    trace = reference_sgd(X, Y, sched, theta0, cfg) if theta0 is not None else None
    d = len(X[0])
    cs = R1CS()
    out_wires = [cs.public_output(f"theta_T[{j}]") for j in range(d + 1)]
    theta = [LC.term(cs.public_input(f"theta_0[{j}]", None if theta0 is None else theta0[j]))
             for j in range(d + 1)]
    cs.public_input("binding", binding)
    append_steps(cs, theta, X, Y, sched, cfg, out_wires, deviation if trace is not None else None)
    if trace is None:
        return cs, None, None
    witness = cs.witness()
    public = cs.public_values(witness)
    if not deviation and [to_signed(v) for v in public[:d + 1]] != trace[-1]:
        raise AssertionError("circuit output differs from reference_sgd (internal error)")
    return cs, witness, public


def _times(cs: R1CS, lc: LC, x, name: str) -> LC:
    """x * lc: free for an integer constant x; one product constraint when x is a data wire (an LC)."""
    if isinstance(x, LC):
        return mul(cs, lc, x, name)
    return LC().add_scaled(lc, x)


def append_steps(cs: R1CS, theta: list[LC], X, Y, sched, cfg: CircuitConfig, out_wires: list[int],
                 deviation: dict | None = None) -> None:
    """Constrain T = len(sched) steps of the protocol's linear-regression step from the parameter LCs
    ``theta``; the last step's parameters go into ``out_wires``. X[i][k] and Y[i] are either integer
    constants (client data, no constraint) or LCs of private data wires (provider data: each product
    X[i][k] * w_k and r_i * X[i][j] is one constraint, 2 B d per step)."""
    f, K, U, B = cfg.frac_bits, cfg.weight_bits, cfg.update_shift, cfg.batch_size
    d = len(theta) - 1
    for t, batch in enumerate(sched, start=1):
        w, b = theta[:-1], theta[-1]
        resid = []  # r_i = z_i - Y[i], as LCs
        for i in batch:
            a = LC().add_scaled(b, 1 << f)
            for k, (x, wk) in enumerate(zip(X[i], w)):
                a.add_scaled(_times(cs, wk, x, f"step{t}.xw[{i}][{k}]"))
            z = floor_div_pow2(cs, a, f, K, f"step{t}.z[{i}]", step=t)
            resid.append(z - Y[i] if isinstance(Y[i], LC) else z.add_term(0, -Y[i]))
        new_theta = []
        for j in range(d + 1):
            if j < d:
                g = LC().add_scaled(w[j], cfg.l2_num * B)
                for ri, i in zip(resid, batch):
                    g.add_scaled(_times(cs, ri, X[i][j], f"step{t}.rx[{i}][{j}]"))
            else:
                g = LC()
                for ri in resid:
                    g.add_scaled(ri, 1 << f)
            e = LC().add_scaled(theta[j], 1 << U).add_scaled(g, -cfg.lr_num)
            q = floor_div_pow2(cs, e, U, K, f"step{t}.theta[{j}]", step=t)
            if t == len(sched):
                wire = out_wires[j]
                materialize_into(cs, q, wire, f"theta_T[{j}]")
            else:
                wire = materialize(cs, q, f"step{t}.theta[{j}]")
            if deviation and (t, j) in deviation and cs.values[wire] is not None:
                cs.set_value(wire, to_signed(cs.values[wire]) + deviation[t, j])
            new_theta.append(LC.term(wire))
        theta = new_theta


def encode_public_inputs(theta_T, theta0, binding: int) -> list[int]:
    """[theta_T..., theta_0..., binding] with signed values as v mod r (the circuit's public signals)."""
    return [from_signed(int(v)) for v in theta_T] + [from_signed(int(v)) for v in theta0] + [binding]


def decode_public_inputs(public, d: int, weight_bits: int) -> tuple[list[int], list[int], int]:
    """Inverse of encode_public_inputs, rejecting parameters outside |v| < 2^(K-1) (brief 7.4)."""
    public = list(public)
    if len(public) != 2 * (d + 1) + 1:
        raise ValueError(f"expected {2 * (d + 1) + 1} public inputs for d = {d}, got {len(public)}")
    vals = []
    for i, v in enumerate(public[:-1]):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < R:
            raise PublicInputRangeError(f"public input {i} is not an int in [0, r)", evidence={"index": i})
        s = to_signed(v)
        if not in_range(s, weight_bits):
            raise PublicInputRangeError(f"public input {i} = {s} is outside [-2^{weight_bits - 1}, 2^{weight_bits - 1})",
                                        evidence={"index": i, "value": s})
        vals.append(s)
    return vals[:d + 1], vals[d + 1:], public[-1]
