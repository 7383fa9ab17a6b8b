"""The testbed: topologies, the orchestrator of ``testbed run`` and the ``testbed`` command.

    from testbed import load_experiment, execute_run, RunOptions
    exp = load_experiment("topologies/ci_small.yaml")
    result = execute_run(exp, open("topologies/ci_small.yaml").read(), RunOptions(quiet=True))
    result.summary["status"], result.run_dir

Names are imported on first use, so ``import testbed`` (and the ``testbed`` command's start-up)
pays only for what is used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "load_experiment": "testbed.topology",
    "TopologyError": "testbed.topology",
    "Experiment": "testbed.experiment",
    "execute_run": "testbed.run",
    "RunOptions": "testbed.run",
    "RunResult": "testbed.run",
    "Launcher": "testbed.launch",
    "LocalLauncher": "testbed.launch",
    "ForkServerLauncher": "testbed.launch",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'testbed' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
