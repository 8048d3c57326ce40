"""Toy jobs for the rollout executor's tests: each misbehaves on purpose, once or always.

A job is (index, folder): ``folder`` is where attempts are counted (one file per try), so
a test can see how often each job was played, on whichever backend and process.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from worldmodels.executor import Work


def _tries(job) -> int:
    """Count this attempt at ``job`` (a file named by the job, the Ray node playing it or
    "local", and the process); return how many there have been, this one included."""
    index, folder = job
    ray = sys.modules.get("ray")
    node = ray.get_runtime_context().get_node_id() if ray and ray.is_initialized() else "local"
    (Path(folder) / f"{index}.{node}.{os.getpid()}").touch()
    return tries(folder, index)


def tries(folder, index: int) -> int:
    return len(list(Path(folder).glob(f"{index}.*")))


def playing_on(folder, node_id: str) -> bool:
    """Whether a job has started on the Ray node ``node_id``."""
    return any(Path(folder).glob(f"*.{node_id}.*"))


def _start(behaviour: str, target: int) -> tuple[str, int]:
    return behaviour, target


def _play(state: tuple[str, int], job) -> int:
    behaviour, target = state
    index, _ = job
    attempt = _tries(job)
    time.sleep(2.0 if behaviour == "slow" else 0.05 * (index % 3))  # out of order
    if index == target:
        if behaviour == "crash_once" and attempt == 1:
            os._exit(1)  # the worker process dies, as a segfaulting engine would
        if behaviour == "hang_once" and attempt == 1 or behaviour == "hang":
            time.sleep(3600)
        if behaviour == "error":
            raise ValueError("this job is broken")
    return index * index


def _name(job) -> str:
    return f"toy episode {job[0]} (env seed {1000 + job[0]})"


def toy(behaviour: str = "fine", target: int = -1) -> Work:
    """Jobs whose result is index squared; job ``target`` misbehaves as ``behaviour`` says:
    "crash_once", "hang_once", "hang" (always) or "error"; "slow": every job takes 2 s."""
    return Work("doom_takecover", _start, (behaviour, target), _play, _name)


def jobs(n: int, folder) -> list:
    return [(i, str(folder)) for i in range(n)]


def travel_by_value() -> None:
    """Send these functions to Ray workers by value: the workers cannot import tests/."""
    import ray

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
