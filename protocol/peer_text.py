"""Text another party chose (a trainer's gRPC status details, an abort reason, a string read from a transcript
someone may have edited), made safe to print: it must not be able to rewrite what the user sees around it
(a line break followed by a forged verdict, a carriage return or a terminal escape that moves the cursor)."""

from __future__ import annotations


def peer_text(text: object, limit: int = 2000) -> str:
    """``text`` with every non-printable character (line breaks, ESC, CR, other C0/C1 controls) shown escaped,
    as Python's repr would, and at most ``limit`` characters."""
    s = "" if text is None else str(text)
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in s[:limit])
    return shown + ("..." if len(s) > limit else "")


def screen_text(text: object) -> str:
    """The last line of defence at the printing layer: like :func:`peer_text` but keeps line breaks and tabs
    (vtrain's own multi-line messages) and has no length limit; embedded peer text is escaped where it is
    embedded, so it has no line break left by the time it gets here."""
    return "".join(c if c.isprintable() or c in "\n\t" else repr(c)[1:-1] for c in str(text))
