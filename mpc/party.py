"""One party of the online phase: rounds, openings, Beaver products with sacrifice, the batched MAC check.

Every round is one message each way (the client, party 0, sends first). A message carries a label that
must be the one the protocol expects next, field elements, and bytes (seeds, commitments). References:
Beaver, CRYPTO 1991 (products from triples); SPDZ (Damgard et al. 2012; 2013, "MACCheck") for the check;
triple sacrifice as in SPDZ's preprocessing. Specified in docs/MPC.md, "Online phase".
"""

from __future__ import annotations

import hmac
import os
import queue
from dataclasses import dataclass, field

import numpy as np

from protocol.prg import KeyStream

from . import field as F
from .errors import MpcAbort, peer_text
from .field import ELEMENT_BYTES, decode, encode
from .hashing import mpc_hash
from .shares import MacKey, Shared


def coefficients(stream: KeyStream, n: int) -> np.ndarray:
    """n independent uniform elements (random linear-combination coefficients) from a keystream."""
    return F.uniform(stream, n)


@dataclass
class Frame:
    label: str
    elements: bytes = b""
    blob: bytes = b""
    abort: str = ""


def send_abort(channel, reason: str, blob: bytes = b"") -> str:
    """Send an abort frame (best effort); returns why it was not delivered, or ""."""
    try:
        channel.send(Frame("abort", blob=blob, abort=reason or "aborted"))
    except Exception as e:  # noqa: BLE001 - the peer may already be gone
        return f"abort not delivered: {e}"
    return ""


class QueueChannel:
    """An in-process channel end (tests): frames through two queues."""

    def __init__(self, inbox: queue.Queue, outbox: queue.Queue, timeout: float = 60.0):
        self.inbox, self.outbox, self.timeout = inbox, outbox, timeout

    def send(self, frame: Frame) -> None:
        self.outbox.put(frame)

    def recv(self) -> Frame:
        try:
            return self.inbox.get(timeout=self.timeout)
        except queue.Empty:
            raise MpcAbort("the other party did not answer in time") from None

    @staticmethod
    def pair(timeout: float = 60.0) -> tuple[QueueChannel, QueueChannel]:
        a, b = queue.Queue(), queue.Queue()
        return QueueChannel(a, b, timeout), QueueChannel(b, a, timeout)


class Rider:
    """A chain of products carried by later openings (``Party.ride``)."""

    __slots__ = ("done", "gen", "req", "result")

    def __init__(self, gen):
        self.gen, self.req, self.done, self.result = gen, None, False, None


@dataclass
class Stats:
    bytes_sent: int = 0
    bytes_received: int = 0
    rounds: int = 0
    opened: int = 0
    mac_checks: int = 0
    notes: list = field(default_factory=list)


class Party:
    def __init__(self, key: MacKey, channel, hooks=None):
        self.key, self.channel = key, channel
        self.stats = Stats()
        self._opened: list[np.ndarray] = []
        self._macs: list[np.ndarray] = []
        self.hooks = hooks  # a cheating strategy (tests/demos): may alter outgoing shares
        self.view: list | None = None  # when a list: (label, opened values) of every opening (tests)
        self.ctx = None  # the seed context once the coin toss is done
        self.sac_t = F.const(0)  # sacrifice scalar and coefficient stream, set after the coin toss
        self.sac_stream: KeyStream | None = None
        self._sac_terms: list[Shared] = []  # this step's sacrifice terms, combined in take_sacrifice
        self._sigma_open: bytes | None = None  # party 0: sigma_0 || nonce, sent at the start of its next frame
        self._sigma_due: tuple | None = None  # party 1: (sigma_1, party 0's commitment, count) awaiting that
        self._riders: list[Rider] = []  # product chains waiting for the next opening (``ride``)
        self._after_check: list = []  # party 1: decisions waiting for its pending MAC check (``when_checked``)

    # ---- rounds ----
    def exchange(self, label: str, elements: np.ndarray | None = None, blob: bytes = b"",
                 count: int | None = None) -> tuple[np.ndarray, bytes]:
        """Send our message, receive the other's (same label). Returns (its elements, its bytes).

        After a MAC check, party 0's next frame starts with the opening of its committed sigma_0
        (ELEMENT_BYTES + 32 bytes), which party 1 verifies here before it sends anything (docs/MPC.md, "MAC check")."""
        got, blob = self.exchange_bytes(label, encode(elements) if elements is not None else b"", blob)
        n = count if count is not None else (0 if elements is None else int(np.size(elements)) // F.L)
        return decode(got, n), blob

    def exchange_bytes(self, label: str, data: bytes, blob: bytes = b"") -> tuple[bytes, bytes]:
        """``exchange`` with the elements' bytes as they are (the masked inputs have their own encoding)."""
        if self.key.party == 0 and self._sigma_open is not None:
            blob, self._sigma_open = self._sigma_open + blob, None
        out = Frame(label, data, blob)
        if self.key.party == 0:
            self._send(out)
            got = self._recv()
            self._check_frame(got, label)
        else:
            got = self._recv()
            if got.abort and got.blob and self._sigma_due is not None:
                self._finish_check(got.blob)  # party 0 stopped after its check: reach our own verdict first
            self._check_frame(got, label)
            if self._sigma_due is not None:
                got.blob = self._finish_check(got.blob)
            self._send(out)
        self.stats.rounds += 1
        return got.elements, got.blob

    @staticmethod
    def _check_frame(got: Frame, label: str) -> None:
        if got.abort:
            raise MpcAbort(f"the other party aborted: {peer_text(got.abort)}")
        if got.label != label:
            raise MpcAbort(f"protocol out of step: expected a {label!r} message, the other party sent "
                           f"{peer_text(repr(got.label), 200)}")

    def _send(self, f: Frame) -> None:
        self.stats.bytes_sent += len(f.elements) + len(f.blob) + len(f.label)
        self.channel.send(f)

    def _recv(self) -> Frame:
        f = self.channel.recv()
        self.stats.bytes_received += len(f.elements) + len(f.blob) + len(f.label)
        return f

    def abort(self, reason: str) -> None:
        """Tell the other party why we stop (best effort)."""
        # party 0 stopping right after a MAC check it passed (an overflow, a failed sacrifice) opens its sigma_0 with
        # the abort, so that party 1 completes the same check and decides for itself (docs/MPC.md section 5.2)
        blob = (self._sigma_open or b"") if self.key.party == 0 else b""
        note = send_abort(self.channel, reason, blob)
        if note:
            self.stats.notes.append(note)

    # ---- openings ----
    def open(self, x: Shared, label: str, check: bool = False) -> np.ndarray:
        """Open [x] to both parties; the value and our MAC shares are kept for the next MAC check.
        ``check=True``: a MAC check of everything opened so far follows at once; this round's frames carry
        party 0's commitment to its seed and party 1's seed (docs/MPC.md, "MAC check").
        The pending products of queued riders (``ride``) travel in the same round, after x's values; their
        products are finished (riders first, in queue order) before x's opened values are returned."""
        riders, self._riders = self._riders, []
        n = x.size
        if riders:
            x = Shared.concat([x.reshape(-1)] + [self._beaver_parts(*r.req[:3]) for r in riders])
        shape = (n, F.L) if riders else x.s.shape[1:]
        mine = x.s[0].reshape(-1, F.L)
        if self.hooks is not None:
            mine = self.hooks.outgoing(label, mine)
        seed, out = self._seed() if check else (b"", b"")
        theirs, blob = self.exchange(label, mine, blob=out)
        opened = F.add(x.s[0].reshape(-1, F.L), theirs)
        self._opened.append(opened)
        self._macs.append(x.s[1].reshape(-1, F.L))
        if self.view is not None:
            self.view.append((label, F.to_ints(opened[:n])))
            if riders:
                self.view.append((label + "/riders", F.to_ints(opened[n:])))
        self.stats.opened += len(opened)
        if check:
            self._mac_round(seed, blob)
        elif blob:
            raise MpcAbort("malformed message: unexpected bytes with an opening")
        pos = n
        for r in riders:
            xr, yr, tri = r.req[:3]
            k = xr.size * (3 if yr is not None else 2)
            self._advance(r, self._beaver_finish(yr, tri, opened[pos:pos + k]))
            pos += k
        return opened[:n].reshape(shape)

    def _beaver_parts(self, x: Shared, y: Shared | None, tri: dict[str, Shared]) -> Shared:
        """What a Beaver product opens: D = x - a, E = y - b (unless y is None) and rho = t a - a2."""
        a, b, a2 = tri["a"], tri["b"], tri["a2"]
        n = a.size
        if y is None:
            return Shared.of(F.sub(np.stack([x.s.reshape(2, n, F.L), F.mul(a.s, self.sac_t)], axis=1),
                                   np.stack([a.s, a2.s], axis=1)).reshape(2, 2 * n, F.L), self.key)
        xs = np.stack([x.s.reshape(2, n, F.L), y.s.reshape(2, n, F.L), F.mul(a.s, self.sac_t)], axis=1)
        return Shared.of(F.sub(xs, np.stack([a.s, b.s, a2.s], axis=1)).reshape(2, 3 * n, F.L), self.key)

    def _beaver_finish(self, y: Shared | None, tri: dict[str, Shared], o: np.ndarray) -> Shared:
        """[x y] = [c] + D [b] + E [a] + D E (or [x b] = [c] + D [b]); records the sacrifice term's parts."""
        a, b, c, c2 = (tri[k] for k in ("a", "b", "c", "c2"))
        n = a.size
        if y is None:
            prods = F.mul(b.s[:, None], o.reshape(2, n, F.L))  # [b] D and [b] rho: (2 shares, 2, n, L)
            z = F.add(c.s, prods[:, 0])
        else:
            o3 = o.reshape(3, n, F.L)  # D, E, rho
            prods = F.mul(np.stack([b.s, a.s, b.s], axis=1), o3)  # [b] D, [a] E, [b] rho in one call
            z = F.add(F.add(c.s, prods[:, 0]), prods[:, 1])
            DE = F.mul(o3[0], o3[1])
            if self.key.party == 0:
                z[0] = F.add(z[0], DE)
            z[1] = F.add(z[1], F.mul(DE, self.key.alpha))
        # sacrifice: t c - c2 - rho b = t(c - ab) - (c2 - a2 b) is 0 for honest triples (computed per step)
        self._sac_terms.append((c.s.reshape(2, n, F.L), c2.s.reshape(2, n, F.L), prods[:, -1]))
        return Shared.of(z, self.key)

    def mul(self, x: Shared, y: Shared | None, tri: dict[str, Shared], label: str) -> Shared:
        """Elementwise [x*y] from triples (a, b, c = ab), each sacrificed against (a2, c2 = a2 b).
        ``y=None`` multiplies by the triple's own random b (used by the zero test)."""
        o = self.open(self._beaver_parts(x, y, tri), label)
        return self._beaver_finish(y, tri, o)

    # ---- riders: products off the critical path, carried by later openings ----
    def ride(self, gen) -> Rider:
        """Queue a chain of products: ``gen`` yields (x, y | None, triples, label) and is sent each product;
        every product travels with the next opening (docs/MPC.md section 8). Returns the rider; its ``result``
        is the generator's return value once it has finished."""
        r = Rider(gen)
        self._advance(r, None)
        return r

    def run(self, gen):
        """Run a chain of products in rounds of its own (each product one opening, under its label)."""
        r = Rider(gen)
        self._advance(r, None, queue=False)
        while not r.done:
            x, y, tri, label = r.req
            self._advance(r, self.mul(x, y, tri, label), queue=False)
        return r.result

    def _advance(self, r: Rider, value, queue: bool = True) -> None:
        try:
            r.req = r.gen.send(value)
            if queue:
                self._riders.append(r)
        except StopIteration as e:
            r.req, r.done, r.result = None, True, e.value

    def sacrifice_matrix(self, terms: Shared) -> None:
        """Sacrifice terms of the matrix triples (each is 0 for honest preprocessing)."""
        self._sac_terms.append(terms.s.reshape(2, -1, F.L))

    def take_sacrifice(self) -> Shared:
        """This step's sacrifice sum: its terms in the order they arose, times the session's next coefficients
        (docs/MPC.md section 5.3)."""
        if not self._sac_terms:
            return Shared.public(F.zeros(()), self.key)
        entries, self._sac_terms = self._sac_terms, []
        prods = [e for e in entries if isinstance(e, tuple)]
        if prods:  # t c - c2 - rho b of every product, in one vectorised computation
            cat = [np.concatenate([e[k] for e in prods], axis=1) for k in range(3)]
            done = F.sub(F.sub(F.mul(cat[0], self.sac_t), cat[1]), cat[2])
            pos, it = 0, []
            for e in prods:
                k = e[0].shape[1]
                it.append(done[:, pos:pos + k])
                pos += k
            it = iter(it)
            entries = [next(it) if isinstance(e, tuple) else e for e in entries]
        terms = np.concatenate(entries, axis=1)
        coeff = coefficients(self.sac_stream, terms.shape[1])
        return Shared.of(F.fsum(F.mul(terms, coeff), 1), self.key)

    # ---- MAC check ----
    def mac_check(self) -> None:
        """A MAC check of every value opened since the last one, when no opening can carry party 1's seed (one
        extra round). The protocol's checks ride on openings (``open(check=True)``); this is a no-op then."""
        if not self._opened:
            return
        seed, out = self._seed()
        _, blob = self.exchange("mac-seed", blob=out)
        self._mac_round(seed, blob)

    def _seed(self) -> tuple[bytes, bytes]:
        """A fresh MAC-check seed and what this party sends with the opening: party 1 its seed u1, party 0 a
        commitment to u0 (so that u0 is fixed before u1 is known: with 50-bit primes a party 0 choosing u0 after
        seeing u1 could grind u0 until the coefficients cancel its error; docs/MPC.md section 5.2)."""
        u = os.urandom(32)
        return u, (u if self.key.party == 1 else mpc_hash("mac/seed", u))

    def _mac_round(self, mine: bytes, theirs: bytes) -> None:
        """SPDZ's MACCheck over the values opened so far, in one round (docs/MPC.md, "MAC check"). The last
        opening carried party 0's commitment to u0 and party 1's u1 (``theirs``: what the other party sent);
        party 0 sends u0 and a commitment to sigma_0; party 1 checks u0 against its commitment and answers
        sigma_1 in the clear; party 0 aborts unless sigma_0 + sigma_1 = 0 and opens sigma_0 at the start of its
        next frame, which party 1 checks before it answers."""
        if len(theirs) != 32:
            raise MpcAbort("malformed MAC-check seed")
        o = np.concatenate(self._opened)
        m = np.concatenate(self._macs)
        self._opened, self._macs = [], []
        diff = F.sub(m, F.mul(o, self.key.alpha))
        if self.key.party == 0:
            u0, u1 = mine, theirs
            sigma = self._sigma(diff, u0, u1)
            nonce = os.urandom(32)
            sb = encode(sigma)
            self._send(Frame("mac", blob=u0 + mpc_hash("mac/commit", b"\x00", sb, nonce)))
            got = self._recv()
            self._check_frame(got, "mac")
            if len(got.blob) != ELEMENT_BYTES:
                raise MpcAbort("malformed MAC-check message")
            self._count_check(sigma, decode(got.blob, 1)[0], len(o))
            self._sigma_open = sb + nonce
        else:
            got = self._recv()
            self._check_frame(got, "mac")
            if len(got.blob) != 64:
                raise MpcAbort("malformed MAC-check message")
            if not hmac.compare_digest(mpc_hash("mac/seed", got.blob[:32]), theirs):
                raise MpcAbort("the other party's MAC-check seed does not match its commitment")
            sigma = self._sigma(diff, got.blob[:32], mine)
            self._send(Frame("mac", blob=encode(sigma)))
            self._sigma_due = (sigma, got.blob[32:], len(o))
        self.stats.rounds += 1

    @staticmethod
    def _sigma(diff: np.ndarray, u0: bytes, u1: bytes) -> np.ndarray:
        r = coefficients(KeyStream(mpc_hash("mac/coefficient", u0, u1)), len(diff))
        return F.dot(r, diff)  # sum_j r_j (m_j - alpha_i o_j), r_j independent and uniform

    def _count_check(self, sigma: np.ndarray, their: np.ndarray, n: int) -> None:
        self.stats.mac_checks += 1
        if not F.is_zero(F.add(sigma, their)):
            raise MpcAbort(f"MAC check failed over {n} opened values: a share or a MAC was altered "
                           "(the other party deviated from the protocol)")

    def _finish_check(self, blob: bytes) -> bytes:
        """Party 1: verify party 0's opening of sigma_0 (the first ELEMENT_BYTES + 32 bytes of its frame); return
        the rest."""
        sigma, com, n = self._sigma_due
        self._sigma_due = None
        k = ELEMENT_BYTES + 32
        if len(blob) < k:
            raise MpcAbort("malformed MAC-check opening")
        if mpc_hash("mac/commit", b"\x00", blob[:ELEMENT_BYTES], blob[ELEMENT_BYTES:k]) != com:
            raise MpcAbort("the other party's MAC-check opening does not match its commitment")
        self._count_check(sigma, decode(blob[:ELEMENT_BYTES], 1)[0], n)
        todo, self._after_check = self._after_check, []
        for fn in todo:
            fn()
        return blob[k:]

    def when_checked(self, fn) -> None:
        """Run ``fn`` (a decision on opened check values) once the MAC check covering them has passed: at once
        for party 0, whose check ends in round ``mac``; for party 1 when party 0's next frame opens sigma_0, before
        party 1 sends anything more (docs/MPC.md section 5.2). A deviation is then reported as one, never as an
        overflow or a failed sacrifice."""
        if self._sigma_due is None:
            fn()
        else:
            self._after_check.append(fn)

    def close_checks(self) -> None:
        """Round ``mac-close``: party 0 delivers the opening of its last sigma_0; nothing is output before."""
        if self._sigma_open is not None or self._sigma_due is not None:
            self.exchange("mac-close")
