"""The dream as gymnasium environments, registered as ``worldmodels/Dream-v0``:

    env = gymnasium.make("worldmodels/Dream-v0", run_dir="runs/doom", temperature=1.15)
    envs = gymnasium.make_vec("worldmodels/Dream-v0", num_envs=1024, run_dir="runs/doom")

Observation: the controller's input ([z, c, h] for Doom, [z, h] otherwise), float32;
action: the game's action in [-1, 1]; reward: +1 per step (survival games) or M's
prediction; terminated: M's done; truncated: the step cap of the run's real episodes;
``render()``: the VAE decoder's picture of z, uint8 64x64x3. The vector env steps all its
dreams as one batch and resets a dream on the step after it ended (gymnasium's NEXT_STEP
autoreset).
"""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from worldmodels.artifacts import load_vae
from worldmodels.dream import Dream, DreamState
from worldmodels.vae import to_frames


def _set_up(env, run_dir, temperature, done, max_steps, render_mode, device) -> None:
    """What both dream envs hold: the dream, its (single) spaces, the renderer and a torch
    generator made at the first reset."""
    options = {"temperature": temperature, "done": done}
    if max_steps is not None:
        options["max_steps"] = max_steps
    env.dream = Dream.from_run_dir(run_dir, device=device, **options)
    obs = gym.spaces.Box(-np.inf, np.inf, (env.dream.obs_size,), np.float32)
    env._spaces = (obs, gym.spaces.Box(-1.0, 1.0, (env.dream.action_dim,), np.float32))
    env.render_mode = render_mode
    env._render = _Renderer(run_dir, device)
    env._generator = None


def _as_actions(actions, shape: tuple[int, ...], device) -> torch.Tensor:
    array = np.asarray(actions, dtype=np.float32)
    if array.shape != shape:
        raise ValueError(f"the dream expects actions of shape {shape}, got {array.shape}")
    return torch.from_numpy(array).to(device)


def _torch_generator(np_random: np.random.Generator, device) -> torch.Generator:
    """The dreams' torch generator, seeded from the env's gymnasium ``np_random``."""
    return torch.Generator(device).manual_seed(int(np_random.integers(2**62)))


class _Renderer:
    """Decodes z into frames with the run's VAE, loaded on first use."""

    def __init__(self, run_dir, device):
        self.run_dir, self.device, self.vae = run_dir, device, None

    @torch.no_grad()
    def __call__(self, z: torch.Tensor) -> np.ndarray:
        if self.vae is None:
            self.vae = load_vae(self.run_dir, torch.device(self.device))
            if self.vae.z_size != z.shape[-1]:
                raise ValueError(
                    f"the VAE of {self.run_dir} has z_size={self.vae.z_size}, "
                    f"the MDN-RNN's dreams have z_size={z.shape[-1]}"
                )
        return to_frames(self.vae.decode(z.to(self.device)))  # (n, 64, 64, 3)


class DreamEnv(gym.Env):
    """One dream. Args: see the module docstring and ``Dream``."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 35}

    def __init__(
        self,
        run_dir: str | os.PathLike,
        temperature: float = 1.15,
        done: str = "logit",
        max_steps: int | None = None,
        render_mode: str | None = "rgb_array",
        device: str = "cpu",
    ) -> None:
        _set_up(self, run_dir, temperature, done, max_steps, render_mode, device)
        self.observation_space, self.action_space = self._spaces

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None or self._generator is None:
            self._generator = _torch_generator(self.np_random, self.dream.device)
        self.state = self.dream.reset(1, self._generator)
        return self._obs(), {}

    def step(self, action):
        action = _as_actions(action, self.action_space.shape, self.dream.device).unsqueeze(0)
        self.state, reward, terminated, truncated = self.dream.step(
            self.state, action, self._generator
        )
        return self._obs(), float(reward[0]), bool(terminated[0]), bool(truncated[0]), {}

    def render(self) -> np.ndarray:
        return self._render(self.state.z)[0]

    def _obs(self) -> np.ndarray:
        return self.dream.observe(self.state)[0].cpu().numpy().astype(np.float32)


class DreamVecEnv(VectorEnv):
    """``num_envs`` dreams stepped as one batch. Args: see the module docstring."""

    metadata = {"render_modes": ["rgb_array"], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        num_envs: int,
        run_dir: str | os.PathLike,
        temperature: float = 1.15,
        done: str = "logit",
        max_steps: int | None = None,
        render_mode: str | None = "rgb_array",
        device: str = "cpu",
    ) -> None:
        _set_up(self, run_dir, temperature, done, max_steps, render_mode, device)
        self.num_envs = num_envs
        self.single_observation_space, self.single_action_space = self._spaces
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        self._np_random, self._np_random_seed = None, None
        if seed is not None:
            self._np_random, self._np_random_seed = gym.utils.seeding.np_random(seed)
        if seed is not None or self._generator is None:
            self._generator = _torch_generator(self.np_random, self.dream.device)
        self.state = self.dream.reset(self.num_envs, self._generator)
        self._ended = torch.zeros(self.num_envs, dtype=torch.bool, device=self.dream.device)
        return self._obs(), {}

    def step(self, actions):
        actions = _as_actions(actions, self.action_space.shape, self.dream.device)
        n, device = self.num_envs, self.dream.device
        state = [x.clone() for x in self.state]
        reward = torch.zeros(n, device=device)
        terminated = torch.zeros(n, dtype=torch.bool, device=device)
        truncated = torch.zeros(n, dtype=torch.bool, device=device)
        live, ended = ~self._ended, self._ended
        if live.any():  # dreams that ended last step cost no model compute this step
            stepped, r, te, tr = self.dream.step(
                self.state.select(live), actions[live], self._generator
            )
            for full, part in zip(state, stepped, strict=True):
                full[live] = part
            reward[live], terminated[live], truncated[live] = r, te, tr
        if ended.any():
            fresh = self.dream.reset(int(ended.sum()), self._generator)
            for full, part in zip(state, fresh, strict=True):
                full[ended] = part
        self.state, self._ended = DreamState(*state), terminated | truncated
        return (
            self._obs(),
            reward.cpu().numpy(),
            terminated.cpu().numpy(),
            truncated.cpu().numpy(),
            {},
        )

    def render(self) -> np.ndarray:
        return self._render(self.state.z)

    def _obs(self) -> np.ndarray:
        return self.dream.observe(self.state).cpu().numpy().astype(np.float32)
