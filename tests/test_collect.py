"""Stage collect: determinism, resumption after kill -9, refusing to mix datasets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from worldmodels.artifacts import run_env
from worldmodels.envs import get_game, make_env
from worldmodels.rollouts import episode_path, episode_paths, read_episode
from worldmodels.stages.collect import CollectConfig, collect, play_episode

SCRIPT = """
import sys
from worldmodels.stages.collect import CollectConfig, collect
if __name__ == "__main__":
    collect(CollectConfig(episodes=int(sys.argv[2]), workers=2), sys.argv[1])
"""


def test_collect_writes_episodes_and_meta(tmp_path):
    stats = collect(CollectConfig(episodes=3, workers=0), tmp_path)
    assert stats["episodes"] == stats["new_episodes"] == 3
    for path in episode_paths(tmp_path):
        episode = read_episode(path)
        n = len(episode["obs"])
        assert n > 100  # the original kept only Doom episodes longer than 100 frames
        assert episode["action"].shape == (n, 1) and episode["action"].dtype == np.float32
        assert episode["reward"].shape == (n,) and episode["reward"].dtype == np.float32
        assert episode["terminated"][-1] != episode["truncated"][-1]
        assert not episode["terminated"][:-1].any() and not episode["truncated"][:-1].any()
        assert np.abs(episode["action"]).max() <= 1.0
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["game"] == "doom_takecover" and meta["frame_shape"] == [64, 64, 3]
    # every game setting, defaults included, so that a later default cannot change the run
    assert meta["env"] == {"skill": 4, "max_steps": 2100, "screen_flashes": True}
    # Rerunning finds everything present and plays nothing.
    assert collect(CollectConfig(episodes=3, workers=0), tmp_path)["new_episodes"] == 0


def _episode_holds(path) -> np.ndarray:
    """How many steps each action of a stored episode was held (not the last, maybe cut)."""
    action = read_episode(path)["action"][:, 0]
    changes = np.flatnonzero(np.diff(action) != 0) + 1
    return np.diff(np.concatenate([[0], changes, [len(action)]]))[:-1]


def _holds(out_dir) -> np.ndarray:
    """The hold lengths of every stored episode's actions, one after another."""
    return np.concatenate([_episode_holds(path) for path in episode_paths(out_dir)])


def test_doom_policy_holds_actions_for_1_to_10_steps(tmp_path):
    collect(CollectConfig(episodes=2, workers=0), tmp_path)
    holds = _holds(tmp_path)
    assert holds.min() >= 1 and holds.max() <= 10 and len(set(holds)) > 3
    assert json.loads((tmp_path / "meta.json").read_text())["policy"] == {"max_hold": 10}


def test_data_policy_settings_are_used_recorded_and_checked(tmp_path):
    collect(CollectConfig(episodes=2, workers=0, policy={"max_hold": 50}), tmp_path / "a")
    holds = _holds(tmp_path / "a")
    assert holds.max() <= 50 and (holds > 10).mean() > 0.5  # 1-50: 80% above 10
    assert json.loads((tmp_path / "a" / "meta.json").read_text())["policy"] == {"max_hold": 50}
    with pytest.raises(ValueError, match=r"holds episodes with policy=\{'max_hold': 50\}"):
        collect(CollectConfig(episodes=3, workers=0), tmp_path / "a")  # not mixed in
    assert len(episode_paths(tmp_path / "a")) == 2
    for policy, error in [
        ({"max_len": 5}, r"data policy of 'doom_takecover' has no setting"),
        ({"max_hold": 0}, r"max_hold must be an integer >= 1, got 0"),
        (
            {"max_hold": [10, 0]},
            r"max_hold must be an integer >= 1 or a list of them, got \[10, 0\]",
        ),
        ({"max_hold": []}, r"max_hold must be an integer >= 1 or a list of them, got \[\]"),
    ]:
        with pytest.raises(ValueError, match=error):
            collect(CollectConfig(episodes=1, workers=0, policy=policy), tmp_path / "b")
        assert not (tmp_path / "b").exists()  # refused before anything is written


def test_a_list_of_max_holds_mixes_policies_episode_by_episode(tmp_path):
    collect(CollectConfig(episodes=4, workers=0, policy={"max_hold": [1, 50]}), tmp_path)
    per_episode = [_episode_holds(path) for path in episode_paths(tmp_path)]
    every_step = [bool((holds == 1).all()) for holds in per_episode]
    assert any(every_step) and not all(every_step)  # both policies, one per episode
    held_long = [holds for holds, one in zip(per_episode, every_step, strict=True) if not one]
    assert all((holds > 10).mean() > 0.5 for holds in held_long)  # 1-50: 80% above 10
    assert json.loads((tmp_path / "meta.json").read_text())["policy"] == {"max_hold": [1, 50]}


def test_episode_depends_on_seed_and_index_only():
    env, game = make_env("doom_takecover"), get_game("doom_takecover")
    a = play_episode(env, game, seed=0, index=5)
    play_episode(env, game, seed=0, index=6)  # whatever ran before does not matter
    b = play_episode(env, game, seed=0, index=5)
    c = play_episode(env, game, seed=1, index=5)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert len(a["obs"]) != len(c["obs"]) or not np.array_equal(a["obs"], c["obs"])
    env.close()


def test_carracing_collects_with_env_options(tmp_path):
    config = CollectConfig(game="carracing", episodes=1, workers=0, env={"max_steps": 80})
    collect(config, tmp_path)
    episode = read_episode(episode_path(tmp_path, 0))
    assert episode["obs"].shape == (80, 64, 64, 3) and episode["action"].shape == (80, 3)
    assert episode["truncated"][-1]
    steer, gas, brake = episode["action"].T
    assert (np.abs(steer) <= 1).all() and (gas >= 0).all() and (brake >= 0).all()


def test_killed_collection_resumes_to_the_same_dataset(tmp_path):
    out, n = tmp_path / "rollouts", 16
    script = tmp_path / "run_collect.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(out), str(n)],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not out.exists() or len(episode_paths(out)) < 4:
        assert proc.poll() is None, "collection ended before it could be killed"
        assert time.monotonic() < deadline, "collection wrote too little in 120 s"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole group: workers and game engines too
    proc.wait()
    assert 4 <= len(episode_paths(out)) < n

    collect(CollectConfig(episodes=n, workers=0), out)
    assert [p.name for p in episode_paths(out)] == [f"{i:06d}.npz" for i in range(n)]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left
    env, game = make_env("doom_takecover"), get_game("doom_takecover")
    for i in range(n):
        stored, fresh = read_episode(episode_path(out, i)), play_episode(env, game, 0, i, 100)
        for key in fresh:
            np.testing.assert_array_equal(stored[key], fresh[key], err_msg=f"episode {i} {key}")
    env.close()


def test_refuses_a_directory_of_another_game(tmp_path):
    collect(CollectConfig(game="carracing", episodes=1, workers=0, env={"max_steps": 5}), tmp_path)
    with pytest.raises(ValueError, match=r"holds episodes with game='carracing'.*'doom_takecover'"):
        collect(CollectConfig(episodes=1, workers=0), tmp_path)
    with pytest.raises(ValueError, match=r"holds episodes with seed=0, this collection has seed=3"):
        collect(
            CollectConfig(game="carracing", episodes=1, workers=0, seed=3, env={"max_steps": 5}),
            tmp_path,
        )
    assert len(episode_paths(tmp_path)) == 1  # nothing lost


def test_unknown_game_setting_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match=r"'doom_takecover' has no setting \['skil'\]"):
        collect(CollectConfig(episodes=1, workers=0, env={"skil": 5}), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_runs_collected_before_the_damage_flash_keep_playing_without_it(tmp_path):
    # meta.json of a run collected before screen_flashes existed (no flash in its frames)
    old = {"game": "doom_takecover", "frame_shape": [64, 64, 3], "seed": 0, "min_length": 100,
           "env": {}, "action_dim": 1}  # fmt: skip
    (tmp_path / "rollouts").mkdir()
    (tmp_path / "rollouts" / "meta.json").write_text(json.dumps(old))
    assert run_env(tmp_path) == {"skill": 4, "max_steps": 2100, "screen_flashes": False}
    with pytest.raises(ValueError, match=r"holds episodes with env=.*'screen_flashes': False"):
        collect(CollectConfig(episodes=1, workers=0), tmp_path / "rollouts")
    assert collect(CollectConfig(episodes=0, workers=0, env={"screen_flashes": False}),
                   tmp_path / "rollouts")["episodes"] == 0  # fmt: skip


def test_refuses_episodes_without_meta(tmp_path):
    (tmp_path / "000000.npz").write_bytes(b"someone else's")
    with pytest.raises(ValueError, match="holds episodes but no meta.json"):
        collect(CollectConfig(episodes=1, workers=0), tmp_path)
    assert (tmp_path / "000000.npz").read_bytes() == b"someone else's"
