"""What both command lines share: help that shows every flag's default, and ``--version``."""

from __future__ import annotations

import argparse
from importlib import metadata

from .statements import PROTOCOL_VERSION


class HelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to a flag's help unless the help already states its default or it has none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (not action.option_strings or "default" in text or action.default is None or action.default is False
                or action.default is argparse.SUPPRESS):   # identity: a default of 0 is still shown
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose subcommands inherit the formatter (subparsers are built with this class)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def version_text(prog: str) -> str:
    try:
        version = metadata.version("vtrain")
    except metadata.PackageNotFoundError:  # running from a source tree without an install
        version = "unknown"
    return f"{prog} {version} (protocol {PROTOCOL_VERSION})"


def add_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version", version=version_text(parser.prog),
                        help="print the version and the protocol version, then exit")
