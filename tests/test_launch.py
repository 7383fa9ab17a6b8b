"""The fork server (testbed/launch.py) on its own: a crowd arriving together is forked as one
batch and released at once; every child runs with only its own standard descriptors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import trio

from testbed.launch import ForkServerLauncher

pytestmark = pytest.mark.integration

CHILD = """\
import json, os, sys
fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
print(json.dumps({"name": sys.argv[1], "fds": fds}))
"""


async def test_a_crowd_arriving_together_is_forked_released_and_run(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    launcher = ForkServerLauncher(preload=["json"])
    codes: dict[str, int] = {}
    async with trio.open_nursery() as nursery:
        await nursery.start(launcher.run)

        async def one(name: str) -> None:
            handle = await launcher.start(name, [sys.executable, str(script), name],
                                          cwd=tmp_path, output_path=tmp_path / f"{name}.out")
            codes[name] = await handle.wait()

        async with trio.open_nursery() as crowd:  # as the orchestrator starts a flash crowd
            for k in range(60):
                crowd.start_soon(one, f"c{k}")
        await launcher.aclose()
        nursery.cancel_scope.cancel()
    assert codes == {f"c{k}": 0 for k in range(60)}
    for k in range(60):
        line = json.loads((tmp_path / f"c{k}.out").read_text())
        # 0-2 are the child's own; the one above is listdir's: no zygote pipe leaked into it.
        assert line["name"] == f"c{k}" and len(line["fds"]) == 4, line
