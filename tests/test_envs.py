"""The real games: frames, actions, caps, seeding, difficulty, registry errors."""

from __future__ import annotations

import builtins
import subprocess
import sys

import numpy as np
import pytest
import torch

from worldmodels.envs import (
    FRAME_SHAPE,
    GAMES,
    DoomTakeCover,
    DrivingPolicy,
    HeldUniform,
    doom_data_policy,
    get_game,
    make_env,
)


@pytest.fixture(scope="module")
def doom():
    env = make_env("doom_takecover")
    yield env
    env.close()


def _step_all(env, actions):
    for a in actions:
        frame, reward, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            return frame, reward, terminated, truncated
    return frame, reward, terminated, truncated


@pytest.mark.parametrize("name", sorted(GAMES))
def test_frames_and_actions(name):
    env = make_env(name)
    frame, _ = env.reset(seed=1)
    assert frame.shape == FRAME_SHAPE and frame.dtype == np.uint8
    assert env.observation_space.contains(frame)
    assert env.action_space.shape == (get_game(name).action_dim,)
    assert env.action_space.dtype == np.float32
    for _ in range(60):  # CarRacing's first ~50 frames are a zoom-in
        frame, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        assert frame.shape == FRAME_SHAPE and frame.dtype == np.uint8
        assert isinstance(reward, float)
    assert frame.std() > 1.0  # a real picture, not a blank buffer
    assert env.spec.max_episode_steps == get_game(name).max_steps
    env.close()


def test_doom_action_mapping_uses_buttons_not_order(doom):
    import vizdoom as vzd

    buttons = list(doom.unwrapped.game.get_available_buttons())
    pressed = {
        name: dict(zip(buttons, doom.unwrapped.button_map[i], strict=True))
        for name, i in (("left", doom.left), ("right", doom.right), ("noop", doom.noop))
    }
    assert pressed["left"] == {vzd.Button.MOVE_LEFT: 1, vzd.Button.MOVE_RIGHT: 0}
    assert pressed["right"] == {vzd.Button.MOVE_LEFT: 0, vzd.Button.MOVE_RIGHT: 1}
    assert not any(pressed["noop"].values())
    cases = {
        -1.0: doom.left,
        -0.34: doom.left,
        -0.33: doom.noop,
        0.0: doom.noop,
        0.33: doom.noop,
        0.34: doom.right,
        1.0: doom.right,
    }
    for value, expected in cases.items():
        assert doom.discrete_action(np.array([value], np.float32)) == expected, value
    # The same rule, batched (numpy or torch): -1 left, 0 stay, +1 right.
    moves = {doom.left: -1.0, doom.noop: 0.0, doom.right: 1.0}
    values = np.array(list(cases), np.float32)
    np.testing.assert_array_equal(doom.move(values), [moves[a] for a in cases.values()])
    assert doom.move(torch.from_numpy(values)).tolist() == [moves[a] for a in cases.values()]


def test_doom_left_and_right_move_the_player(doom):
    import vizdoom as vzd

    game = doom.unwrapped.game
    doom.reset(seed=3)
    assert game.get_game_variable(vzd.GameVariable.ANGLE) == 0.0  # facing +x: left is +y
    y0 = game.get_game_variable(vzd.GameVariable.POSITION_Y)
    _step_all(doom, [np.array([-1.0])] * 15)
    y1 = game.get_game_variable(vzd.GameVariable.POSITION_Y)
    _step_all(doom, [np.array([1.0])] * 30)
    y2 = game.get_game_variable(vzd.GameVariable.POSITION_Y)
    assert y1 > y0 + 10 and y2 < y1 - 10


def test_doom_reward_is_one_per_step_and_cap_truncates():
    env = make_env("doom_takecover", max_steps=40)
    env.reset(seed=0)
    rewards, steps = [], 0
    while True:
        _, reward, terminated, truncated, _ = env.step(np.array([0.0]))
        rewards.append(reward)
        steps += 1
        if terminated or truncated:
            break
    assert steps == 40 and truncated and not terminated
    assert rewards == [1.0] * 40
    assert make_env("doom_takecover").spec.max_episode_steps == 2100
    env.close()


def _random_policy_score(skill: int, episodes: int) -> float:
    """Mean survival of a per-step uniform random policy (the paper's random row)."""
    env = make_env("doom_takecover", skill=skill)
    rng = np.random.default_rng(0)
    lengths = []
    for episode in range(episodes):
        env.reset(seed=episode)
        steps, done = 0, False
        while not done:
            _, _, terminated, truncated, _ = env.step(rng.uniform(-1, 1, 1).astype(np.float32))
            steps, done = steps + 1, terminated or truncated
        lengths.append(steps)
    env.close()
    return float(np.mean(lengths))


def test_doom_random_policy_score_matches_paper_difficulty():
    # Paper: random policy 210 +- 108 (100 episodes). Skill 4 here: 222 +- 96; skill 5: 71.
    assert 160 <= _random_policy_score(skill=4, episodes=30) <= 300
    assert _random_policy_score(skill=5, episodes=10) < 120


def _frames_after_hits(screen_flashes: bool) -> list[np.ndarray]:
    """The frames of the 5 steps after each hit that did not kill, ``[5, 64, 64, 3]`` each."""
    env = make_env("doom_takecover", screen_flashes=screen_flashes)
    vizdoom_game, after = env.unwrapped.game, []
    for seed in range(4):
        env.reset(seed=seed)
        health, frames, hits, done = 100.0, [], [], False
        while not done:
            frame, _, terminated, truncated, _ = env.step(np.array([0.0], np.float32))
            done = terminated or truncated
            frames.append(frame.astype(np.float32))
            now = vizdoom_game.get_game_variable(vizdoom_game.get_available_game_variables()[0])
            if not done and now < health:
                hits.append(len(frames) - 1)  # index of the frame that shows the hit
            health = now
        after = [np.stack(frames[i : i + 5]) for i in hits]
        if after:
            break
    env.close()
    return after


def test_doom_screen_flashes_show_hits():
    # A hit that does not kill shows only as Doom's red flash (the HUD is cropped away).
    with_flash, without = _frames_after_hits(True), _frames_after_hits(False)
    assert with_flash and without

    def redness(hits):
        return max(float((f[..., 0] - f[..., 1]).mean()) for frames in hits for f in frames)

    assert redness(with_flash) > 90 and redness(without) < 40
    # The detector the examples count hits with sees every one, and none without the flash.
    assert all(DoomTakeCover.flashed(frames).any() for frames in with_flash)
    assert not any(DoomTakeCover.flashed(frames).any() for frames in without)


def test_same_seed_same_frames(doom):
    def play(seed):
        frame, _ = doom.reset(seed=seed)
        policy = doom_data_policy(np.random.default_rng(0))
        frames = [frame]
        for _ in range(40):
            frame, *_ = doom.step(policy(frame))
            frames.append(frame)
        return np.stack(frames)

    a, b, c = play(7), play(7), play(8)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_doom_games_starting_together_in_a_fresh_directory(tmp_path):
    start = "from worldmodels.envs import make_env; e = make_env('doom_takecover'); e.reset(seed=0)"
    for round_ in range(3):  # ViZDoom raced for ./_vizdoom/ and segfaulted ~1 start in 8
        cwd = tmp_path / str(round_)
        cwd.mkdir()
        procs = [subprocess.Popen([sys.executable, "-c", start], cwd=cwd) for _ in range(2)]
        assert [p.wait(timeout=120) for p in procs] == [0, 0]


def test_unknown_game_lists_known_ones():
    with pytest.raises(ValueError, match="unknown game 'pong'; known games: carracing, doom"):
        make_env("pong")


def test_missing_dependency_names_the_package(monkeypatch):
    real_import = builtins.__import__

    def no_vizdoom(name, *args, **kwargs):
        if name.startswith("vizdoom"):
            raise ModuleNotFoundError("No module named 'vizdoom'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_vizdoom)
    with pytest.raises(ImportError, match=r"needs the vizdoom==1\.3\.2 package: pip install"):
        make_env("doom_takecover")


def test_held_uniform_is_the_data_policy_and_batches():
    # The data policy draws as the collected episodes were drawn: an action, then its hold.
    rng, expected = np.random.default_rng(3), []
    while len(expected) < 300:
        action = rng.uniform(-1, 1, 1).astype(np.float32)
        expected += [action] * int(rng.integers(1, 51))
    policy = doom_data_policy(np.random.default_rng(3), max_hold=50)
    np.testing.assert_array_equal(np.stack([policy(None) for _ in range(300)]), expected[:300])
    # Batched: each episode keeps its own action for 1-10 steps, whichever others step.
    held = HeldUniform(4, [-1.0], [1.0], np.random.default_rng(0))
    seen = [[] for _ in range(4)]
    for step in range(200):
        index = np.array([0, 1, 2, 3] if step % 3 else [1, 3])
        for i, a in zip(index, held(None, torch.from_numpy(index)).numpy(), strict=True):
            seen[i].append(float(a[0]))
    for actions in seen:
        runs = np.diff(np.flatnonzero(np.diff(actions) != 0))
        assert runs.min() >= 1 and runs.max() <= 10 and -1 <= min(actions) <= max(actions) <= 1
    with pytest.raises(ValueError, match="max_hold must be an integer >= 1, got 0"):
        HeldUniform(1, [-1.0], [1.0], np.random.default_rng(0), max_hold=0)


def test_driving_policy_steers_to_the_road_within_its_gas_range():
    grass = np.zeros(FRAME_SHAPE, np.uint8)
    grass[...] = (100, 200, 100)
    right = grass.copy()
    right[28:46, 48:60] = 105  # grey road ahead, right of the car
    for max_gas in (0.5, 1.0):
        policy = DrivingPolicy(np.random.default_rng(0), explore=0.0, max_gas=max_gas)
        actions = np.stack([policy(right) for _ in range(2000)])
        assert (actions[:, 0] > 0).mean() > 0.9  # following the road: steer right, mostly
        assert actions[:, 1].min() >= 0.1 and actions[:, 1].max() <= max_gas
        assert actions[:, 1].max() > max_gas - 0.1  # the whole range is used
        assert actions[:, 2].min() >= 0 and actions[:, 2].max() <= 0.5
    with pytest.raises(ValueError, match="max_gas must be in \\[0.1, 1\\], got 1.5"):
        DrivingPolicy(np.random.default_rng(0), max_gas=1.5)
