"""The progress display of ``testbed run``: a live line on a terminal, plain lines otherwise.

Progress goes to stderr so that stdout carries only the summary. rich is imported only on a
terminal: a CI log gets plain lines and the run does not pay for the import.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import IO, Any, Literal

from peer.units import format_rate

Mode = Literal["tty", "plain", "quiet"]
PLAIN_PERIOD = 5.0


@dataclass(frozen=True, slots=True)
class ProgressState:
    elapsed: float
    complete: int
    leechers: int
    running: int
    rate: float
    """Aggregate payload download rate of the swarm, bytes/s."""
    host_cpu: float | None


def format_state(state: ProgressState) -> str:
    cpu = f"{state.host_cpu:.0f}%" if state.host_cpu is not None else "-"
    return (f"t={state.elapsed:6.1f}s  complete {state.complete}/{state.leechers}  "
            f"running {state.running}  swarm {format_rate(state.rate)}  host CPU {cpu}")


def choose_mode(quiet: bool, stream: IO[str] = sys.stderr) -> Mode:
    if quiet:
        return "quiet"
    return "tty" if stream.isatty() else "plain"


class Progress:
    def __init__(self, mode: Mode, stream: IO[str] = sys.stderr) -> None:
        self.mode = mode
        self.stream = stream
        self._last_plain = -PLAIN_PERIOD
        self._live: Any = None
        if mode == "tty":
            from rich.console import Console
            from rich.live import Live

            self._live = Live("", console=Console(file=stream), refresh_per_second=4,
                              transient=False)
            self._live.start()

    def update(self, state: ProgressState) -> None:
        if self.mode == "tty":
            self._live.update(format_state(state))
        elif self.mode == "plain" and state.elapsed - self._last_plain >= PLAIN_PERIOD:
            self._last_plain = state.elapsed
            print(format_state(state), file=self.stream, flush=True)

    def message(self, text: str) -> None:
        """A one-off line (a peer crashed, the run is stopping…), above the live line."""
        if self.mode == "tty":
            self._live.console.print(text, markup=False, highlight=False)
        elif self.mode == "plain":
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
