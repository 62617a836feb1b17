"""Command-line plumbing shared by ``python -m rvkvm.emulator`` and
``rvkvm-server``: subcommand parsers that report their own unknown options,
and ``guarded``, which turns any exception of a command into one line
``PROG: error: ...`` and exit status 1 (the traceback too with ``--debug``
or ``RVKVM_DEBUG=1``), and Ctrl-C into a quiet 130."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from importlib import metadata
from typing import Any, Callable

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT


def version() -> str:
    """The installed rvkvm distribution's version."""
    try:
        return metadata.version("rvkvm")
    except metadata.PackageNotFoundError:
        return "unknown (not installed as a package)"


class SubcommandParser(argparse.ArgumentParser):
    """A subcommand's parser: it reports unknown options itself, with its
    own usage (argparse otherwise hands them up to the top-level parser)."""

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


def debug_wanted(flag: bool = False) -> bool:
    return flag or os.environ.get("RVKVM_DEBUG") == "1"


def guarded(prog: str, func: Callable[[], int], debug: bool = False) -> int:
    """``func()``'s status; an exception becomes one line on stderr."""
    try:
        return int(func())
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as err:  # noqa: BLE001 - the one place that reports them all
        if debug_wanted(debug):
            traceback.print_exc()
        text = " ".join(f"{type(err).__name__}: {err}".split())
        print(f"{prog}: error: {text}", file=sys.stderr)
        return EXIT_ERROR
