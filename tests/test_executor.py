"""The rollout executor: results in job order, episodes lost to a dead worker, a lost
node or a hang played again exactly once, failures named; the same on worker processes
and on a Ray cluster of several nodes on this machine (tests marked ``ray``)."""

from __future__ import annotations

import json
import shutil
import socket
import sys
import threading
import time

import jobs
import numpy as np
import pytest
from commands import SMOKE
from jobs import toy, tries

from worldmodels import executor
from worldmodels.__main__ import main
from worldmodels.agent import Agent
from worldmodels.executor import EpisodeFailed, Executor, RuntimeConfig, connect, import_ray
from worldmodels.rollouts import episode_path, episode_paths, read_episode
from worldmodels.stages.collect import CollectConfig, collect
from worldmodels.stages.controller import ControllerConfig, real_fitness

LOCAL = RuntimeConfig(backend="local", timeout=4.0)  # toy jobs: a hang is found in 4 s
RAY = RuntimeConfig(backend="ray", timeout=6.0)  # (a new Ray worker takes seconds to start)
RAY_LONG = RuntimeConfig(backend="ray")  # real episodes, losses: the default timeout


@pytest.fixture(params=["local", pytest.param("ray", marks=pytest.mark.ray)])
def runtime(request) -> RuntimeConfig:
    if request.param == "ray":
        request.getfixturevalue("ray_cluster")
        jobs.travel_by_value()
        return RAY
    return LOCAL


def test_results_come_in_job_order_whoever_plays_them(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    in_process = Executor(LOCAL, workers=0).map(toy(), jobs.jobs(7, tmp_path / "a"))
    assert in_process == [i * i for i in range(7)]
    seen = []
    two = Executor(LOCAL, workers=2).map(
        toy(), jobs.jobs(7, tmp_path / "b"), lambda i, r: seen.append(i) or -r
    )
    assert two == [-r for r in in_process]  # what on_result returns is kept, in job order
    assert sorted(seen) == list(range(7))
    assert all(tries(tmp_path / "b", i) == 1 for i in range(7))


def test_an_episode_lost_with_its_worker_is_played_again_once(runtime, tmp_path, capsys):
    results = Executor(runtime, workers=2).map(toy("crash_once", 3), jobs.jobs(6, tmp_path))
    assert results == [i * i for i in range(6)]
    assert tries(tmp_path, 3) == 2
    assert "toy episode 3 (env seed 1003) its worker was lost" in capsys.readouterr().out


def test_a_hung_episode_is_timed_out_and_played_again(runtime, tmp_path):
    results = Executor(runtime, workers=2).map(toy("hang_once", 1), jobs.jobs(4, tmp_path))
    assert results == [i * i for i in range(4)]
    assert tries(tmp_path, 1) == 2
    # a job that shared a killed process pool was played again without being blamed
    assert all(tries(tmp_path, i) in (1, 2) for i in range(4))


def test_an_episode_that_hangs_again_is_reported_with_its_seed(tmp_path):
    with pytest.raises(EpisodeFailed, match=r"toy episode 2 \(env seed 1002\): played 2 times"):
        Executor(LOCAL, workers=2).map(toy("hang", 2), jobs.jobs(3, tmp_path))
    assert tries(tmp_path, 2) == 2


def test_an_error_raised_by_a_job_fails_at_once_naming_it(runtime, tmp_path):
    with pytest.raises(EpisodeFailed, match=r"toy episode 1 \(env seed 1001\) failed: this job"):
        Executor(runtime, workers=2).map(toy("error", 1), jobs.jobs(3, tmp_path))
    assert tries(tmp_path, 1) == 1  # not retried: it would fail again


# --- a Ray cluster of several nodes ------------------------------------------------------------


def _in_background(fn) -> threading.Thread:
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    return thread


def _wait_for(condition, thread: threading.Thread, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert thread.is_alive() and time.monotonic() < deadline, "the batch stalled or failed"
        time.sleep(0.02)


@pytest.mark.ray
def test_episodes_of_a_lost_node_are_played_again_elsewhere_once(ray_cluster, tmp_path, capsys):
    jobs.travel_by_value()
    doomed, results = ray_cluster.add_node(num_cpus=1), []
    three = Executor(RAY_LONG, workers=3)
    batch = _in_background(lambda: results.extend(three.map(toy("slow"), jobs.jobs(5, tmp_path))))
    _wait_for(lambda: jobs.playing_on(tmp_path, doomed.node_id), batch)
    ray_cluster.remove_node(doomed)
    batch.join(timeout=120)
    assert results == [i * i for i in range(5)]
    assert sorted(tries(tmp_path, i) for i in range(5)) == [1, 1, 1, 1, 2]  # one lost, once
    assert "its worker was lost (NodeDiedError)" in capsys.readouterr().out


@pytest.mark.ray
def test_collection_on_ray_losing_a_node_equals_local(ray_cluster, tmp_path):
    doomed, out = ray_cluster.add_node(num_cpus=1), tmp_path / "ray"

    def run():
        with executor.use(RAY_LONG):
            collect(CollectConfig(episodes=8, workers=3), out)

    batch = _in_background(run)
    _wait_for(lambda: out.exists() and len(episode_paths(out)) >= 1, batch)
    ray_cluster.remove_node(doomed)  # a third of the workers, mid-collection
    batch.join(timeout=300)
    assert not batch.is_alive(), "collection on Ray did not finish after a node was lost"
    assert [p.name for p in episode_paths(out)] == [f"{i:06d}.npz" for i in range(8)]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left

    collect(CollectConfig(episodes=8, workers=0), tmp_path / "local")  # local, this process
    for i in range(8):
        ours, theirs = (read_episode(episode_path(tmp_path / d, i)) for d in ("ray", "local"))
        for key in theirs:
            np.testing.assert_array_equal(ours[key], theirs[key], err_msg=f"episode {i} {key}")


@pytest.mark.ray
def test_real_game_fitness_on_ray_equals_local(ray_cluster, trained_run, tmp_path):
    run_dir = tmp_path / "run"
    for stage in ("vae", "mdnrnn"):
        shutil.copytree(trained_run[0] / stage, run_dir / stage)
    (run_dir / "rollouts").mkdir()
    meta = {"game": "doom_takecover", "env": {"max_steps": 300}}
    (run_dir / "rollouts" / "meta.json").write_text(json.dumps(meta))
    controller = Agent.from_run_dir(run_dir).controller
    config = ControllerConfig(fitness="real", episodes=2, workers=2)
    fitness = real_fitness(run_dir, config, controller)
    n_params = controller.n_params
    population = np.random.default_rng(0).normal(0, 1, (3, n_params))
    local = fitness(population, 0)
    with executor.use(RAY_LONG):
        on_ray = fitness(population, 0)
    np.testing.assert_array_equal(on_ray, local)
    assert len(set(local)) > 1  # the candidates differ, so equality means something


@pytest.mark.ray
def test_a_node_that_cannot_play_the_game_is_named(ray_cluster, tmp_path):
    fake = tmp_path / "hidden" / "vizdoom"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named vizdoom')\n")
    broken = ray_cluster.add_node(num_cpus=1, env_vars={"PYTHONPATH": str(fake.parent)})
    jobs.travel_by_value()
    try:
        with pytest.raises(RuntimeError, match=r"1 of 3 Ray nodes cannot play doom_takecover; "
                           r".* \(node \w{8}\): game 'doom_takecover' needs the vizdoom=="
                           r".* package: pip install vizdoom=="):  # fmt: skip
            Executor(RAY, workers=2).map(toy(), jobs.jobs(2, tmp_path))
    finally:
        ray_cluster.remove_node(broken)


# --- bad input ---------------------------------------------------------------------------------


def test_an_unreachable_ray_address_fails_within_seconds_naming_it():
    pytest.importorskip("ray")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(
        ConnectionError, match=f"cannot reach the Ray cluster at '127.0.0.1:{port}'"
    ):
        connect(f"127.0.0.1:{port}")
    with pytest.raises(ValueError, match="runtime.ray_address must be auto, HOST:PORT"):
        connect("no-port-here")


def test_an_unreachable_address_on_the_command_line_is_one_line(tmp_path, capsys):
    pytest.importorskip("ray")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run_dir, start = tmp_path / "run", time.monotonic()
    argv = ["run", SMOKE, f"run_dir={run_dir}", "runtime.backend=ray",
            f"runtime.ray_address=127.0.0.1:{port}"]  # fmt: skip
    assert main(argv) == 2
    assert time.monotonic() - start < 10
    error = capsys.readouterr().err.strip()
    expected = f"worldmodels: error: cannot reach the Ray cluster at '127.0.0.1:{port}'"
    assert error.startswith(expected)
    assert len(error.splitlines()) == 1 and not run_dir.exists()  # nothing written


def test_backend_ray_without_ray_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails, as when not installed
    with pytest.raises(
        ImportError, match=r"runtime.backend=ray needs the ray package: pip install ray=="
    ):
        import_ray()
