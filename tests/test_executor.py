"""The rollout executor: results in job order, episodes lost to a dead worker or a hang
played again exactly once, failures named; the same on worker processes and on Ray."""

from __future__ import annotations

import socket
import sys

import jobs
import pytest
from jobs import toy, tries

from worldmodels.executor import EpisodeFailed, Executor, RuntimeConfig, connect, import_ray

LOCAL = RuntimeConfig(backend="local", timeout=4.0)


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


@pytest.fixture
def folder(tmp_path):
    return tmp_path


def test_an_episode_lost_with_its_worker_is_played_again_once(folder, capsys):
    results = Executor(LOCAL, workers=2).map(toy("crash_once", 3), jobs.jobs(6, folder))
    assert results == [i * i for i in range(6)]
    assert tries(folder, 3) == 2
    assert "toy episode 3 (env seed 1003) its worker was lost" in capsys.readouterr().out


def test_a_hung_episode_is_timed_out_and_played_again(folder):
    results = Executor(LOCAL, workers=2).map(toy("hang_once", 1), jobs.jobs(4, folder))
    assert results == [i * i for i in range(4)]
    assert tries(folder, 1) == 2
    # a job that shared the killed pool was played again without being blamed
    assert all(tries(folder, i) in (1, 2) for i in range(4))


def test_an_episode_that_hangs_again_is_reported_with_its_seed(folder):
    config = RuntimeConfig(timeout=2.0, retries=1)
    with pytest.raises(EpisodeFailed, match=r"toy episode 2 \(env seed 1002\): played 2 times"):
        Executor(config, workers=2).map(toy("hang", 2), jobs.jobs(3, folder))
    assert tries(folder, 2) == 2


def test_an_error_raised_by_a_job_fails_at_once_naming_it(folder):
    with pytest.raises(EpisodeFailed, match=r"toy episode 1 \(env seed 1001\) failed: this job"):
        Executor(LOCAL, workers=2).map(toy("error", 1), jobs.jobs(3, folder))
    assert tries(folder, 1) == 1  # not retried: it would fail again


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


def test_backend_ray_without_ray_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails, as when not installed
    with pytest.raises(
        ImportError, match=r"runtime.backend=ray needs the ray package: pip install ray=="
    ):
        import_ray()
