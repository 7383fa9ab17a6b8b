"""What one rechoke costs: tit-for-tat over N neighbours, triggered (``interest``) and ``timer``.

    .venv/bin/python -m bench.rechoke_cost                 # 40 neighbours, ~10 s
    .venv/bin/python -m bench.rechoke_cost --neighbours 55

In the flash crowd a leecher rechokes about twice a second, almost all of them triggered by a
neighbour's interest changing (``unchoke_when_free``), and every rechoke builds a view of every
neighbour (docs/capacity.md). This runs ``Choking.rechoke`` in a loop on neighbours with filled
rate meters, in one process, and prints the best of five rounds in microseconds per rechoke.
Run it with ``PYTHONPATH=<checkout>`` to measure another checkout.
"""

from __future__ import annotations

import argparse
import random
import time

from peer.choking import Choking
from peer.config import ProtocolSettings
from peer.neighbour import Neighbour
from peer.policies.tit_for_tat import TitForTat
from peer.policy_types import RechokeTrigger

NUM_PIECES = 64


def neighbours(count: int, rng: random.Random) -> list[Neighbour]:
    out = []
    for i in range(count):
        nbr = Neighbour(i, f"127.0.0.1:{10000 + i}", "out", num_pieces=NUM_PIECES,
                        rate_window=20.0, now=0.0)
        nbr.peer = f"-TB0100-{i:012d}"
        nbr.registered = True
        nbr.peer_interested = rng.random() < 0.7
        nbr.am_interested = rng.random() < 0.7
        for step in range(40):
            nbr.down_meter.add(rng.randrange(50_000), step * 0.5)
            nbr.up_meter.add(rng.randrange(50_000), step * 0.5)
        out.append(nbr)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--neighbours", type=int, default=40)
    args = ap.parse_args()
    choking = Choking(TitForTat(seed=1), ProtocolSettings(unchoke_when_free=True))
    nbrs = neighbours(args.neighbours, random.Random(1))
    now = 20.0

    def best(trigger: RechokeTrigger, count: int) -> float:
        rounds = []
        for _ in range(5):
            start = time.perf_counter()
            for k in range(count):
                choking.rechoke(trigger, nbrs, now + k * 1e-4, we_are_seed=False,
                                num_pieces=NUM_PIECES, upload_capacity=None)
            rounds.append((time.perf_counter() - start) / count * 1e6)
        return min(rounds)

    choking.rechoke("timer", nbrs, now, we_are_seed=False, num_pieces=NUM_PIECES,
                    upload_capacity=None)
    print(f"{args.neighbours} neighbours: interest {best('interest', 1000):.0f} us, "
          f"timer {best('timer', 200):.0f} us per rechoke (best of 5)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
