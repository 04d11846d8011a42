"""Command-line interface: a thin layer over the library.

Each sub-command registers a parser and a handler ``func(args) -> int``. A ``ClipmemError``
anywhere becomes one line on stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import sys

from .errors import ClipmemError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m clipmem_core",
        description="Measure memorization in CLIP models (CLIPMem) and find mis-captioned pairs.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from .review.cli import add_review_parser  # noqa: PLC0415  (keeps start-up light)

    add_review_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ClipmemError as exc:
        print(f"clipmem: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("clipmem: interrupted", file=sys.stderr)
        return 130
