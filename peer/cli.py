"""The house rule for every command line: a user's mistake is one line and exit status 2.

Shared by ``python -m peer.maketorrent``, ``python -m tracker`` and
``python -m testbed.external`` (light: argparse and sys only).
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import NoReturn


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument prints one line (no usage block) and exits with 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def fail(prog: str, message: str) -> NoReturn:
    """A bad input found after parsing: one line on stderr, exit status 2."""
    sys.stderr.write(f"{prog}: error: {message}\n")
    sys.exit(2)


def seconds(text: str) -> float:
    """An argparse type: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}")
    return value
