"""Rank-1 constraint systems over F_r: wires, linear combinations, constraints <A,z>*<B,z> = <C,z>.

Wire layout (circom/snarkjs order, docs/SNARK.md section 2): wire 0 is the constant 1, then the public outputs, then
the public inputs, then the private inputs, then internal wires. ``z[1..n_public]`` is what snarkjs calls
the public signals. The builder enforces that order: every kind must be allocated before the next one.

A linear combination is an :class:`LC`, a dict ``{wire: coefficient}`` with coefficients in [1, r)
(zeros are dropped; signed integers are stored as ``v mod r``).

The builder optionally carries a value per wire, so gadgets can compute the witness while they add
their constraints; building without values (``None``) gives the same constraints, e.g. for a setup.
"""

from __future__ import annotations

from protocol.snark.errors import ConstraintViolation
from protocol.snark.field import R

__all__ = ["LC", "R1CS", "Constraint", "as_lc", "example_cubic"]

ONE = 0  # the constant wire


def _check_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    return value


class LC(dict):
    """A linear combination sum_w coeff_w * z_w, stored as {wire: coeff mod r} without zero entries."""

    @classmethod
    def const(cls, c: int) -> LC:
        return cls.term(ONE, c)

    @classmethod
    def term(cls, wire: int, coeff: int = 1) -> LC:
        out = cls()
        out.add_term(wire, coeff)
        return out

    def add_term(self, wire: int, coeff: int) -> LC:
        """In place: self += coeff * z_wire. Returns self."""
        _check_int(wire, "wire")
        c = (self.get(wire, 0) + _check_int(coeff, "coefficient")) % R
        if c:
            self[wire] = c
        else:
            self.pop(wire, None)
        return self

    def add_scaled(self, other: LC, k: int = 1) -> LC:
        """In place: self += k * other. Returns self."""
        k %= R
        if k:
            for w, c in other.items():
                self.add_term(w, c * k)
        return self

    def copy(self) -> LC:
        return LC(self)

    def __add__(self, other) -> LC:
        return self.copy().add_scaled(as_lc(other))

    __radd__ = __add__

    def __sub__(self, other) -> LC:
        return self.copy().add_scaled(as_lc(other), -1)

    def __rsub__(self, other) -> LC:
        return as_lc(other).add_scaled(self, -1)

    def __neg__(self) -> LC:
        return LC().add_scaled(self, -1)

    def __mul__(self, k) -> LC:
        return LC().add_scaled(self, _check_int(k, "LC scale factor"))

    __rmul__ = __mul__

    def evaluate(self, z) -> int:
        """<self, z> mod r for a full assignment z (a sequence indexed by wire)."""
        return sum(c * z[w] for w, c in self.items()) % R


def as_lc(x) -> LC:
    """Coerce an LC or an int constant to an LC (a new object for ints, the same object for LCs)."""
    if isinstance(x, LC):
        return x
    return LC.const(_check_int(x, "constant"))


class Constraint(tuple):
    """(a, b, c, name): the constraint <a,z> * <b,z> = <c,z>."""

    __slots__ = ()

    def __new__(cls, a: LC, b: LC, c: LC, name: str):
        return super().__new__(cls, (a, b, c, name))

    def __getnewargs__(self):
        return tuple(self)

    a = property(lambda self: self[0])
    b = property(lambda self: self[1])
    c = property(lambda self: self[2])
    name = property(lambda self: self[3])


_KINDS = ("public_output", "public_input", "private_input", "internal")


class R1CS:
    """Constraint-system builder; also the object that setup, prove and the file writers consume."""

    def __init__(self):
        self.constraints: list[Constraint] = []
        self.wire_names: list[str] = ["one"]
        self.values: list[int | None] = [1]
        self._counts = dict.fromkeys(_KINDS, 0)
        self._stage = 0  # index into _KINDS of the latest kind allocated

    # ---------------------------------------------------------------- wires
    @property
    def n_wires(self) -> int:
        return len(self.wire_names)

    @property
    def n_pub_out(self) -> int:
        return self._counts["public_output"]

    @property
    def n_pub_in(self) -> int:
        return self._counts["public_input"]

    @property
    def n_prv_in(self) -> int:
        return self._counts["private_input"]

    @property
    def n_public(self) -> int:
        """l = number of public signals (outputs first, then inputs): wires 1..l."""
        return self.n_pub_out + self.n_pub_in

    @property
    def n_constraints(self) -> int:
        return len(self.constraints)

    def _alloc(self, kind: str, name: str, value: int | None) -> int:
        stage = _KINDS.index(kind)
        if stage < self._stage:
            raise ValueError(f"cannot allocate a {kind} wire {name!r} after a {_KINDS[self._stage]} wire: "
                             f"allocate wires in the order {', '.join(_KINDS)}")
        self._stage = stage
        self._counts[kind] += 1
        self.wire_names.append(str(name))
        self.values.append(None)
        wire = len(self.wire_names) - 1
        if value is not None:
            self.set_value(wire, value)
        return wire

    def public_output(self, name: str, value: int | None = None) -> int:
        return self._alloc("public_output", name, value)

    def public_input(self, name: str, value: int | None = None) -> int:
        return self._alloc("public_input", name, value)

    def private_input(self, name: str, value: int | None = None) -> int:
        return self._alloc("private_input", name, value)

    def private(self, name: str, value: int | None = None) -> int:
        """An internal (private, non-input) wire."""
        return self._alloc("internal", name, value)

    def set_value(self, wire: int, value: int) -> None:
        """Assign an integer value (signed allowed, stored mod r) to a wire other than the constant."""
        _check_int(wire, "wire")
        if not 0 < wire < self.n_wires:
            raise ValueError(f"wire {wire} does not exist or is the constant wire (n_wires = {self.n_wires})")
        self.values[wire] = _check_int(value, f"value of wire {self.wire_names[wire]!r}") % R

    def value(self, lc) -> int | None:
        """<lc, values> mod r, or None if some wire of lc has no value yet."""
        lc = as_lc(lc)
        total = 0
        for w, c in lc.items():
            v = self.values[w]
            if v is None:
                return None
            total += c * v
        return total % R

    # ---------------------------------------------------------------- constraints
    def enforce(self, a, b, c, name: str) -> int:
        """Add the constraint a * b = c (each an LC or an int constant); returns its index."""
        lcs = [as_lc(x).copy() for x in (a, b, c)]
        for lc in lcs:
            for w in lc:
                if not 0 <= w < self.n_wires:
                    raise ValueError(f"constraint {name!r} refers to wire {w}, which is not allocated")
        self.constraints.append(Constraint(*lcs, str(name)))
        return len(self.constraints) - 1

    def enforce_zero(self, lc, name: str) -> int:
        """The linear constraint lc = 0, written as lc * 1 = 0."""
        return self.enforce(lc, 1, 0, name)

    # ---------------------------------------------------------------- witness
    def witness(self) -> list[int]:
        """The full assignment z (z_0 = 1); raises ValueError naming the first unassigned wire."""
        for w, v in enumerate(self.values):
            if v is None:
                raise ValueError(f"wire {w} ({self.wire_names[w]!r}) has no value; assign it before proving")
        return list(self.values)

    def public_values(self, witness=None) -> list[int]:
        """z_1..z_l, the public signals in snarkjs order."""
        z = self.witness() if witness is None else witness
        return list(z[1:1 + self.n_public])

    def check_witness_shape(self, z) -> list[int]:
        z = list(z)
        if len(z) != self.n_wires:
            raise ValueError(f"witness has {len(z)} values, the constraint system has {self.n_wires} wires")
        for i, v in enumerate(z):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < R:
                raise ValueError(f"witness value of wire {i} ({self.wire_names[i]!r}) is not an int in [0, r)")
        if z[0] != 1:
            raise ValueError(f"witness wire 0 must be the constant 1, got {z[0]}")
        return z

    def first_violation(self, z) -> int | None:
        """Index of the first constraint that z does not satisfy, or None."""
        z = self.check_witness_shape(z)
        for j, (a, b, c, _name) in enumerate(self.constraints):
            if a.evaluate(z) * b.evaluate(z) % R != c.evaluate(z):
                return j
        return None

    def check(self, z) -> None:
        """Raise ConstraintViolation naming the first constraint that z does not satisfy."""
        j = self.first_violation(z)
        if j is not None:
            a, b, c, name = self.constraints[j]
            av, bv, cv = a.evaluate(z), b.evaluate(z), c.evaluate(z)
            raise ConstraintViolation(
                f"constraint {j} ({name!r}) is not satisfied: <A,z>*<B,z> = {av * bv % R}, <C,z> = {cv}",
                index=j, name=name, a=av, b=bv, c=cv)

    def is_satisfied(self, z) -> bool:
        return self.first_violation(z) is None

    def n_nonzeros(self) -> int:
        return sum(len(a) + len(b) + len(c) for a, b, c, _ in self.constraints)

    def __repr__(self) -> str:
        return (f"R1CS(wires={self.n_wires}, public_outputs={self.n_pub_out}, public_inputs={self.n_pub_in}, "
                f"private_inputs={self.n_prv_in}, constraints={self.n_constraints})")


def example_cubic(x: int = 3) -> R1CS:
    """The textbook circuit x^3 + x + 5 = out (the example of V. Buterin, "Quadratic Arithmetic Programs: from
    Zero to Hero", 2016): wires [1, out, x, x2, x3], out public output, x private input; with x = 3 the
    witness is [1, 35, 3, 9, 27]. Used by smoke tests and interop checks."""
    cs = R1CS()
    out = cs.public_output("out", x**3 + x + 5)
    xw = cs.private_input("x", x)
    x2 = cs.private("x2", x * x)
    x3 = cs.private("x3", x**3)
    cs.enforce(LC.term(xw), LC.term(xw), LC.term(x2), "x*x")
    cs.enforce(LC.term(x2), LC.term(xw), LC.term(x3), "x2*x")
    cs.enforce(LC.term(x3) + LC.term(xw) + 5, 1, LC.term(out), "out")
    return cs
