"""The rollout executor: every real-game episode of every stage is played through it.

Collection, real-game fitness, the calibration and the evaluation each hand it a batch:
a ``Work`` (what the batch's jobs share, built once per worker process: a game, or an
agent with its world model) and a list of jobs (one episode each). ``Executor.map``
returns their results in job order, whatever played them:

- backend ``local`` (the default): spawned worker processes on this machine;
- backend ``ray``: tasks on a Ray cluster (``ray.init(address=...)``), joined or started.

The same rules hold on both:

- a worker process that dies, or a Ray node that is lost, loses the episodes it was
  playing; they are played again elsewhere, and every job's result is delivered once;
- an episode that runs longer than ``timeout`` seconds counts as hung: its worker is
  killed and the episode played again;
- a job is played at most ``1 + retries`` times; then the batch fails naming the job;
- an exception raised by a job itself (a bug, a bad setting) is not retried: it fails
  the batch at once, naming the job.

Results are handed to ``on_result(i, result)`` as they arrive (collection writes episode
files there, so a killed collection keeps what it wrote); what it returns is kept.
Episodes are seeded by the job, never by the worker, so results do not depend on the
backend or on how many workers there are.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, ClassVar

from worldmodels.envs import check_installed
from worldmodels.runtime import resolve_workers


@dataclass
class RuntimeConfig:
    """Where real-game episodes are played (the rollout executor)."""

    limits: ClassVar[dict[str, str]] = {
        "backend": "local ray", "timeout": "> 0", "retries": ">= 0",
    }  # fmt: skip
    """Allowed values, checked before any stage runs (see ``config.check_limits``)."""

    backend: str = "local"
    """"local": worker processes on this machine; "ray": tasks on a Ray cluster."""
    ray_address: str | None = None
    """The cluster to join: "auto" (the one started on this machine with ``ray start``),
    "HOST:PORT" or "ray://HOST:PORT"; None joins the one in RAY_ADDRESS or started on
    this machine, if any, else starts a Ray instance here."""
    timeout: float = 600.0
    """Seconds an episode may run before it counts as hung and is played again."""
    retries: int = 1
    """How many times an episode lost to a dead worker, a lost node or a hang is played
    again before the batch fails naming it."""


@dataclass(frozen=True)
class Work:
    """What a batch's jobs share.

    ``setup(*args, **kwargs)`` builds, once per worker process, the state (an env,
    an agent) that ``play(state, job)`` plays one job with; a state with a ``close``
    method is closed when the batch is played in this process. Both are module-level
    functions (they are sent to workers by name). ``game`` is the game played: on Ray
    every node is checked for its package first. ``describe(job)`` names a job in errors.
    """

    game: str
    setup: Callable[..., Any]
    args: tuple
    play: Callable[[Any, Any], Any]
    describe: Callable[[Any], str] = repr
    kwargs: dict = field(default_factory=dict)

    def start(self):
        return self.setup(*self.args, **self.kwargs)


class EpisodeFailed(RuntimeError):
    """A job failed: raised itself, or was lost ``1 + retries`` times."""


# --- the one loop both backends share ------------------------------------------------------


class Executor:
    """Plays batches of jobs on a backend, with the retry and timeout rules above."""

    def __init__(self, config: RuntimeConfig | None = None, workers: int | None = None):
        self.config = config or RuntimeConfig()
        self.workers = workers

    def map(self, work: Work, jobs: list, on_result: Callable[[int, Any], Any] | None = None):
        """Play ``jobs``; return their results (or what ``on_result`` made of them) in order."""
        keep = on_result or (lambda i, result: result)
        if not jobs:
            return []
        if self.workers == 0:  # in this process: no workers to lose, nothing to time out
            state = work.start()
            try:
                return [keep(i, _call(work, state, job)) for i, job in enumerate(jobs)]
            finally:
                if hasattr(state, "close"):
                    state.close()
        backend = LocalBackend if self.config.backend == "local" else RayBackend
        with backend(work, self.workers, self.config) as pool:
            return self._loop(pool, work, jobs, keep)

    def _loop(self, pool, work: Work, jobs: list, keep) -> list:
        results, todo, tries = [None] * len(jobs), deque(range(len(jobs))), [0] * len(jobs)
        running: dict[Any, tuple[int, float]] = {}  # handle -> (job index, start time)

        def again(i: int, why: str) -> None:
            if tries[i] > self.config.retries:
                raise EpisodeFailed(
                    f"{work.describe(jobs[i])}: played {tries[i]} times, each time {why}; "
                    "see the worker's error above"
                )
            print(f"executor: {work.describe(jobs[i])} {why}; playing it again", flush=True)
            todo.appendleft(i)

        while todo or running:
            while todo and len(running) < pool.slots:
                i = todo.popleft()
                tries[i] += 1
                running[pool.submit(jobs[i])] = (i, time.monotonic())
            for handle, outcome, value in pool.wait(list(running), seconds=1.0):
                i, _ = running.pop(handle)
                if outcome == "done":
                    results[i] = keep(i, value)
                elif outcome == "error":
                    raise EpisodeFailed(f"{work.describe(jobs[i])} failed: {value}") from value
                else:
                    again(i, f"its worker was lost ({value})")
            now = time.monotonic()
            hung = [h for h, (_, start) in running.items() if now - start > self.config.timeout]
            if hung:
                for handle in pool.kill(hung, list(running)):  # and any it could not spare
                    i, _ = running.pop(handle)
                    if handle in hung:
                        again(i, f"ran past the {self.config.timeout:g} s timeout (hung)")
                    else:
                        tries[i] -= 1  # not its fault
                        todo.appendleft(i)
        return results


def _call(work: Work, state, job):
    try:
        return work.play(state, job)
    except Exception as e:
        raise EpisodeFailed(f"{work.describe(job)} failed: {e}") from e


# --- local: spawned worker processes ---------------------------------------------------------

_STATE: dict[str, Any] = {}  # per worker process: the state of the works it has played


def _local_init(work: Work) -> None:
    _STATE["local"] = (work, work.start())  # the work crosses to a worker once, not per job


def _local_play(job):
    work, state = _STATE["local"]
    return work.play(state, job)


class LocalBackend:
    """A pool of spawned processes (no fork of a process holding threads), rebuilt after a
    worker dies or hangs; at most ``slots`` jobs run at once, so each runs at once."""

    def __init__(self, work: Work, workers: int | None, config: RuntimeConfig):
        self.work, self.slots, self.pool = work, resolve_workers(workers), None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._close(clean=exc[0] is None)

    def submit(self, job):
        if self.pool is None:
            spawn = multiprocessing.get_context("spawn")
            self.pool = ProcessPoolExecutor(
                self.slots, mp_context=spawn, initializer=_local_init, initargs=(self.work,)
            )
        return self.pool.submit(_local_play, job)

    def wait(self, handles: list, seconds: float) -> Iterator[tuple[Any, str, Any]]:
        done, _ = wait(handles, timeout=seconds, return_when=FIRST_COMPLETED)
        broken = False
        for future in done:
            error = future.exception()
            if isinstance(error, BrokenProcessPool):
                broken = True
                yield future, "lost", "a worker process died"
            elif error is not None:
                yield future, "error", error
            else:
                yield future, "done", future.result()
        if broken:  # every job of a broken pool is lost, finished or not
            self._close(clean=False)

    def kill(self, hung: list, running: list) -> list:
        """A process pool cannot kill one worker: all go, and every running job with them."""
        self._close(clean=False)
        return running

    def _close(self, clean: bool) -> None:
        if self.pool is None:
            return
        if clean:
            self.pool.shutdown(wait=True)
        else:  # a dead or hung worker would keep a clean shutdown waiting forever
            for process in list((getattr(self.pool, "_processes", None) or {}).values()):
                process.kill()
            self.pool.shutdown(wait=False, cancel_futures=True)
        self.pool = None


# --- ray: tasks on a cluster ------------------------------------------------------------------

RAY_PACKAGE = "ray==2.60.0"
_CHECKED: set[tuple[str, str]] = set()  # (Ray node, game) pairs found able to play


def import_ray():
    """The ray module, or a one-line ImportError naming the package."""
    try:
        import ray
    except ImportError as e:
        raise ImportError(
            f"runtime.backend=ray needs the ray package: pip install {RAY_PACKAGE}"
        ) from e
    return ray


def connect(address: str | None):
    """Join the Ray cluster at ``address`` (None: start one on this machine), unless this
    process is connected already; return the ray module. An address that does not answer
    fails within seconds, naming it."""
    ray = import_ray()
    _check_reachable(address)
    if ray.is_initialized():
        return ray
    try:
        ray.init(address=address, include_dashboard=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
        raise ConnectionError(f"cannot connect to {where}: {e}") from e
    return ray


def _check_reachable(address: str | None, seconds: float = 5.0) -> None:
    """A HOST:PORT (or ray://HOST:PORT) that does not accept a connection is refused
    here: ``ray.init`` would keep retrying it for a long time."""
    if address in (None, "auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"runtime.ray_address must be auto, HOST:PORT or ray://HOST:PORT, "
                         f"got {address!r}")  # fmt: skip
    try:
        socket.create_connection((host, int(port)), timeout=seconds).close()
    except OSError as e:
        raise ConnectionError(f"cannot reach the Ray cluster at {address!r}: {e}") from e


def _ray_play(key: str, work_ref: list, job):
    """A Ray task: one job, with the work's state built once per worker process."""
    if key not in _STATE:
        _STATE.clear()  # one work at a time: the last batch's agent can go
        work = import_ray().get(work_ref[0])
        _STATE[key] = (work, work.start())
    work, state = _STATE[key]
    return work.play(state, job)


def _ray_probe(game: str) -> str:
    """A Ray task run on one node: why it cannot play ``game`` ("" if it can)."""
    try:
        check_installed(game)
    except ImportError as e:
        return str(e)
    return ""


class RayBackend:
    """Tasks on a Ray cluster, at most ``slots`` at once.

    Ray's own task retries are off (``max_retries=0``): a task lost with its worker or
    node comes back to the shared loop, which counts it and plays it again, so the
    rules are the local backend's. A hung task is cancelled with its worker process.
    """

    def __init__(self, work: Work, workers: int | None, config: RuntimeConfig):
        self.ray = connect(config.ray_address)
        _check_nodes(self.ray, work.game)
        self.workers, self._cpus, self._cpus_read = workers, 1, -1.0
        self.task = self.ray.remote(num_cpus=1, max_retries=0)(_ray_play)
        self.key, self.work_ref = uuid.uuid4().hex, [self.ray.put(work)]

    @property
    def slots(self) -> int:
        """Jobs to run at once: ``workers``, but never more than the cluster's CPUs now
        (read at most once a second), so that a job's clock runs only while it plays,
        also after a node is lost."""
        if time.monotonic() - self._cpus_read > 1.0:
            self._cpus = max(1, int(self.ray.cluster_resources().get("CPU", 1)))
            self._cpus_read = time.monotonic()
        return min(self.workers or self._cpus, self._cpus)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.work_ref = None

    def submit(self, job):
        return self.task.remote(self.key, self.work_ref, job)

    def wait(self, handles: list, seconds: float) -> Iterator[tuple[Any, str, Any]]:
        ready, _ = self.ray.wait(handles, num_returns=1, timeout=seconds)
        if ready:  # and whatever else is ready by now
            ready, _ = self.ray.wait(handles, num_returns=len(handles), timeout=0)
        for ref in ready:
            try:
                yield ref, "done", self.ray.get(ref)
            except self.ray.exceptions.RayTaskError as e:  # raised by the job itself
                yield ref, "error", e.cause if e.cause is not None else e
            except self.ray.exceptions.RayError as e:  # worker died, node lost, object lost
                yield ref, "lost", type(e).__name__

    def kill(self, hung: list, running: list) -> list:
        for ref in hung:
            self.ray.cancel(ref, force=True)
        return hung


def _check_nodes(ray, game: str) -> None:
    """Refuse a cluster with a node that cannot play ``game``, naming the node and the
    package. Each node is checked once per game (nodes that join later, when they first
    appear)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0]
    new = [n for n in nodes if (n["NodeID"], game) not in _CHECKED]
    probe = ray.remote(num_cpus=0, max_retries=0)(_ray_probe)
    answers = ray.get([
        probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
        .remote(game)
        for n in new
    ])  # fmt: skip
    missing = [f"{n['NodeManagerAddress']} (node {n['NodeID'][:8]}): {why}"
               for n, why in zip(new, answers, strict=True) if why]  # fmt: skip
    if missing:
        raise RuntimeError(f"{len(missing)} of {len(nodes)} Ray nodes cannot play {game}; "
                           f"install it there or leave them out: {'; '.join(missing)}")  # fmt: skip
    _CHECKED.update((n["NodeID"], game) for n in new)


# --- the executor the stages use ---------------------------------------------------------------

_RUNTIME = RuntimeConfig()


@contextlib.contextmanager
def use(config: RuntimeConfig):
    """Within this block, ``executor(workers)`` plays on ``config``'s backend; a Ray
    instance started here is shut down at its end."""
    global _RUNTIME
    before, _RUNTIME = _RUNTIME, config
    started = False
    try:
        if config.backend == "ray":
            ray = import_ray()
            started = not ray.is_initialized()
            connect(config.ray_address)
        yield
    finally:
        _RUNTIME = before
        if started:
            import_ray().shutdown()
            _CHECKED.clear()


def executor(workers: int | None) -> Executor:
    """The executor of the current runtime (``use``) with ``workers`` workers (None: one
    per core, or the Ray cluster's CPUs; 0: play in this process)."""
    return Executor(_RUNTIME, workers)
