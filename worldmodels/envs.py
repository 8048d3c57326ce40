"""The real games of World Models (Ha & Schmidhuber, 2018, Sec. 3-4), as the paper had them.

Every game is a gymnasium env whose observation is a 64x64x3 uint8 frame (cropped and
resized with OpenCV's INTER_AREA as the original) and whose action is a float32 vector
in the controller's range. ``GAMES`` is the registry: a third game is one entry.

- ``doom_takecover``: ViZDoom's TakeCover, skill 4 by default (its per-step random policy
  scores 222 +- 96 here, the paper's random row 210 +- 108), no frame skip, +1 reward per
  step survived, capped at 2100 steps, the red damage flash shown as in the original.
  The action is a scalar in [-1, 1]: below -1/3 moves left, above +1/3 moves right,
  else no-op.
- ``carracing``: gymnasium's CarRacing-v3, continuous (steer, gas, brake), top 84 rows of
  the 96x96 frame, 1000 steps.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import gymnasium as gym
import numpy as np
import torch

FRAME_SIZE = 64
FRAME_SHAPE = (FRAME_SIZE, FRAME_SIZE, 3)

cv2.setNumThreads(1)  # one env per worker process; OpenCV's own threads only contend


def to_frame(screen: np.ndarray, keep_rows: float) -> np.ndarray:
    """Crop the top ``keep_rows`` fraction of a HxWx3 screen, resize to 64x64x3 uint8."""
    rows = round(screen.shape[0] * keep_rows)
    return cv2.resize(screen[:rows], (FRAME_SIZE, FRAME_SIZE), interpolation=cv2.INTER_AREA)


class DoomTakeCover(gym.Wrapper):
    """VizdoomTakeCover-v1 with 64x64 frames and the controller's scalar action.

    Args:
        skill: ViZDoom's doom_skill (1-5). 4 matches the paper's random-policy score.
        max_steps: Episode cap (the original's 2100); reaching it truncates.
        screen_flashes: Render Doom's red flash on taking damage (default on).
            ViZDoom 1.3's take_cover.cfg turns it off; the original's gym-doom
            take_cover.cfg (early ViZDoom) has no such key, so, as far as we can tell,
            its frames showed it. Without it, and with the HUD cropped away, a hit that
            does not kill leaves no trace in the frames (1-3 fireballs kill at skill 4),
            and the dream cannot tell that hugging a wall does not keep you safe.
    """

    keep_rows = 400 / 480  # the original cropped rows 0-400 of its 480-row screen

    def __init__(self, skill: int = 4, max_steps: int = 2100, screen_flashes: bool = True) -> None:
        check_installed("doom_takecover")
        from vizdoom import gymnasium_wrapper  # noqa: F401  (registers the Vizdoom envs)

        # ViZDoom makes ./_vizdoom/ at start-up; two games starting at once in a fresh
        # directory race for it and one segfaults (about 1 start in 8 here). Make it first.
        os.makedirs("_vizdoom", exist_ok=True)
        env = gym.make("VizdoomTakeCover-v1", doom_skill=skill, max_episode_steps=max_steps)
        env.unwrapped.game.set_render_screen_flashes(screen_flashes)  # the game starts at reset
        super().__init__(env)
        self.observation_space = gym.spaces.Box(0, 255, FRAME_SHAPE, np.uint8)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.noop, self.right, self.left = _doom_action_indices(env.unwrapped)

    @staticmethod
    def move(action):
        """-1 (left), 0 (stay) or +1 (right): the move of actions in [-1, 1], elementwise
        (numpy or torch)."""
        return (action > 1 / 3) * 1.0 - (action < -1 / 3) * 1.0

    @staticmethod
    def flashed(frames: np.ndarray) -> np.ndarray:
        """Which of the frames ``[..., 64, 64, 3]`` (0-255) show the red damage flash: mean
        red minus mean green above 60 (about 100-190 in a flash, near 0 without)."""
        frames = np.asarray(frames, np.float32)
        return frames[..., 0].mean((-2, -1)) - frames[..., 1].mean((-2, -1)) > 60

    @staticmethod
    def fireballs(frames: np.ndarray) -> np.ndarray:
        """Which pixels of the frames ``[..., 64, 64, 3]`` (0-255) belong to a fireball:
        bright yellow (red > 180, green > 140, red - blue > 60). Walls, floor, the lamps'
        few pixels and the damage flash's red are not; a close fireball covers 50-350."""
        f = np.asarray(frames, np.int16)
        return (f[..., 0] > 180) & (f[..., 1] > 140) & (f[..., 0] - f[..., 2] > 60)

    def discrete_action(self, action: np.ndarray) -> int:
        """The wrapped env's discrete action for a scalar in [-1, 1]."""
        move = self.move(float(np.asarray(action).reshape(-1)[0]))
        return {-1.0: self.left, 0.0: self.noop, 1.0: self.right}[move]

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        return to_frame(obs["screen"], self.keep_rows), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(self.discrete_action(action))
        return to_frame(obs["screen"], self.keep_rows), float(reward), terminated, truncated, info


def _doom_action_indices(vizdoom_env) -> tuple[int, int, int]:
    """Indices of (no-op, right, left) in the wrapper's Discrete space, read off its buttons.

    Checked rather than assumed: vizdoom 1.3 orders them 0 no-op, 1 right, 2 left, but
    that is a detail of its button map, not an API.
    """
    import vizdoom as vzd

    buttons = list(vizdoom_env.game.get_available_buttons())
    wanted = {
        "noop": {},
        "right": {vzd.Button.MOVE_RIGHT: 1},
        "left": {vzd.Button.MOVE_LEFT: 1},
    }
    found = {}
    for index, pressed in enumerate(vizdoom_env.button_map):
        state = {b: int(p) for b, p in zip(buttons, pressed, strict=True) if p}
        for name, target in wanted.items():
            if state == target:
                found[name] = index
    if len(found) != 3:
        raise RuntimeError(f"VizdoomTakeCover-v1 buttons {buttons} lack one of no-op/left/right")
    return found["noop"], found["right"], found["left"]


class CarRacing(gym.Wrapper):
    """CarRacing-v3 (continuous) with 64x64 frames from the top 84 of its 96 rows."""

    keep_rows = 84 / 96  # the bottom 12 rows are the dashboard

    def __init__(self, max_steps: int = 1000) -> None:
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # headless: never open a window
        check_installed("carracing")
        env = gym.make("CarRacing-v3", continuous=True, max_episode_steps=max_steps)
        super().__init__(env)
        self.observation_space = gym.spaces.Box(0, 255, FRAME_SHAPE, np.uint8)

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        return to_frame(obs, self.keep_rows), info

    def step(self, action):
        action = np.asarray(action, dtype=np.float32)
        obs, reward, terminated, truncated, info = self.env.step(action)
        return to_frame(obs, self.keep_rows), float(reward), terminated, truncated, info


# The module each game's engine comes from, and the package that installs it.
PACKAGES = {
    "doom_takecover": ("vizdoom", "vizdoom==1.3.2"),
    "carracing": ("Box2D", "box2d==2.3.10"),
}


def check_installed(game: str) -> None:
    """Raise a one-line ImportError naming the package if ``game``'s engine is missing."""
    module, package = PACKAGES[game]
    try:
        __import__(module)
    except ImportError as e:
        raise ImportError(
            f"game {game!r} needs the {package} package: pip install {package}"
        ) from e


# --- random data policies (Sec. 3.1 / 4.1: episodes of a random policy) --------------------


class HeldUniform:
    """A uniform action in [low, high], held for 1 to ``max_hold`` steps (blind), for n
    episodes at once, each with its own action and count: Doom's data policy (the
    paper's ``max_hold`` is 10) and the calibration's random policy.

    ``policy(obs, index)`` (the interface of ``Dream.rollout`` and ``calibrate``) gives
    the actions ``[len(index), A]`` of episodes ``index`` as a torch tensor;
    ``policy.act(index)`` the same as a numpy array. Draws come from ``rng`` in episode
    order: redrawn actions, then their hold lengths.
    """

    def __init__(self, n: int, low, high, rng: np.random.Generator, max_hold: int = 10):
        if not (isinstance(max_hold, int) and max_hold >= 1):
            raise ValueError(f"max_hold must be an integer >= 1, got {max_hold!r}")
        self.low = np.asarray(low, np.float32)
        self.high = np.asarray(high, np.float32)
        self.rng, self.max_hold = rng, max_hold
        self.action = np.zeros((n, len(self.low)), np.float32)
        self.left = np.zeros(n, np.int64)

    def act(self, index: np.ndarray) -> np.ndarray:
        redraw = index[self.left[index] == 0]
        if len(redraw):
            shape = (len(redraw), len(self.low))
            self.action[redraw] = self.rng.uniform(self.low, self.high, shape)
            self.left[redraw] = self.rng.integers(1, self.max_hold + 1, len(redraw))
        self.left[index] -= 1
        return self.action[index]

    def __call__(self, obs, index) -> torch.Tensor:
        return torch.from_numpy(self.act(np.asarray(index)))


def doom_data_policy(rng: np.random.Generator, max_hold: int | list[int] = 10) -> Callable:
    """Doom's data policy for one episode: ``policy(frame)`` -> action ``[1]``.

    A list ``max_hold`` mixes policies: each episode draws its own from the list first
    (uniformly), e.g. ``[10, 50]`` gives half the episodes the paper's 1-10 steps and
    half 1-50.
    """
    if isinstance(max_hold, list):
        if not max_hold or not all(isinstance(m, int) and m >= 1 for m in max_hold):
            raise ValueError(
                f"max_hold must be an integer >= 1 or a list of them, got {max_hold!r}"
            )
        max_hold = max_hold[int(rng.integers(len(max_hold)))]
    held, first = HeldUniform(1, [-1.0], [1.0], rng, max_hold), np.zeros(1, np.int64)
    return lambda frame: held.act(first)[0]


class DrivingPolicy:
    """CarRacing's data policy: drives along the road and off it, at random.

    The paper used randomly initialised agents. A blind random policy leaves the road
    within seconds and never finds it again (about 5% of its frames show the car on the
    road, measured here); this one keeps coming back, so the frames cover the road,
    curves, the verge and grass (about 30% on the road). In segments of 10-60 steps it
    either follows the road (steers towards the grey pixels ahead of the car, plus noise)
    or explores (steering is a mean-reverting random walk), with a random gas level
    (uniform in [0.1, ``max_gas``]) and an occasional brake. A controller trained in a
    dream of this data learns nothing true about gas levels above ``max_gas``.
    """

    def __init__(
        self,
        rng: np.random.Generator,
        explore: float = 0.2,
        gain: float = 0.08,
        max_gas: float = 0.5,
    ):
        if not 0.1 <= max_gas <= 1.0:
            raise ValueError(f"max_gas must be in [0.1, 1], got {max_gas!r}")
        self.rng, self.explore, self.gain, self.max_gas = rng, explore, gain, max_gas
        self.noise, self.left = 0.0, 0

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        if self.left == 0:
            self.follow = self.rng.random() >= self.explore
            self.left = int(self.rng.integers(10, 61))
            self.gas = float(self.rng.uniform(0.1, self.max_gas))
            self.brake = float(self.rng.uniform(0.0, 0.5)) if self.rng.random() < 0.1 else 0.0
        self.left -= 1
        self.noise += -0.15 * self.noise + 0.3 * self.rng.normal()
        steer = self.noise
        road_cols = road_columns(frame)
        if self.follow and road_cols.size:
            steer = (road_cols.mean() - FRAME_SIZE / 2) * self.gain + 0.3 * self.noise
        return np.array([np.clip(steer, -1, 1), self.gas, self.brake], dtype=np.float32)


def road_columns(frame: np.ndarray) -> np.ndarray:
    """Columns of the grey road pixels in the band just ahead of the car (rows 28-45)."""
    band = frame[28:46].astype(np.int16)
    r, g = band[..., 0], band[..., 1]
    return np.nonzero((np.abs(r - g) < 10) & (r > 85) & (r < 125))[1]


# --- registry -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Game:
    """What the pipeline needs to know about a game."""

    make: Callable[..., gym.Env]
    action_dim: int
    max_steps: int
    random_policy: Callable[[np.random.Generator], Callable[[np.ndarray], np.ndarray]]
    min_length: int = 0  # shorter random episodes are redrawn (the original's Doom kept > 100)
    survival: bool = False  # reward is +1 per step alive: the dream needs no reward head
    restart_flag: bool = False  # M's input carries a flag at each episode's first step
    controller_bias: bool = True  # C = W [z, h] + b (CarRacing); Doom's C had no bias
    squash: str = "tanh"  # how C's output becomes the action: "tanh" or "carracing"
    danger: Callable[[np.ndarray], np.ndarray] | None = None
    """Pixels of frames that show what kills (Doom: fireballs), to check that V draws them."""
    move: Callable | None = None
    """The discrete move of actions (Doom: left, stay, right), to count changes of move."""


GAMES: dict[str, Game] = {
    "doom_takecover": Game(
        DoomTakeCover,
        1,
        2100,
        doom_data_policy,
        min_length=100,
        survival=True,
        restart_flag=True,
        controller_bias=False,
        danger=DoomTakeCover.fireballs,
        move=DoomTakeCover.move,
    ),
    "carracing": Game(CarRacing, 3, 1000, DrivingPolicy, squash="carracing"),
}


def get_game(name: str) -> Game:
    if name not in GAMES:
        raise ValueError(f"unknown game {name!r}; known games: {', '.join(sorted(GAMES))}")
    return GAMES[name]


# Settings added after runs were collected without them, and the value those runs had.
_ADDED_SETTINGS = {"doom_takecover": {"screen_flashes": False}}


def recorded_settings(name: str, recorded: dict) -> dict:
    """The full settings of episodes whose meta.json recorded ``recorded``: a setting added
    since then takes the value those episodes were played with, not today's default."""
    return game_settings(name, **{**_ADDED_SETTINGS.get(name, {}), **recorded})


def game_settings(name: str, **kwargs) -> dict:
    """Every keyword argument of the game's env, defaults filled in (what collect records,
    so that a run keeps its settings when a default changes)."""
    return _keywords(get_game(name).make, kwargs, f"game {name!r}")


def policy_settings(name: str, **kwargs) -> dict:
    """Every keyword argument of the game's data policy (all but its generator), defaults
    filled in, e.g. ``{"max_hold": 10}`` for Doom."""
    return _keywords(get_game(name).random_policy, kwargs, f"the data policy of {name!r}", 1)


def _keywords(fn: Callable, kwargs: dict, owner: str, skip: int = 0) -> dict:
    """``kwargs`` over the defaults of ``fn``'s parameters after the first ``skip``; an
    unknown key is refused by name."""
    params = dict(list(inspect.signature(fn).parameters.items())[skip:])
    unknown = set(kwargs) - set(params)
    if unknown:
        raise ValueError(f"{owner} has no setting {sorted(unknown)}; it has {sorted(params)}")
    return {key: kwargs.get(key, p.default) for key, p in params.items()}


def make_env(name: str, **kwargs) -> gym.Env:
    """Build a game by its registry name, e.g. ``make_env("doom_takecover", skill=5)``."""
    game = get_game(name)
    return game.make(**kwargs)
