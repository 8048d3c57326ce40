"""The dream: M as an environment (Ha & Schmidhuber, 2018, Sec. 4.4, "Training inside of
the dream"), stepping any number of dreams as one batched tensor computation.

``Dream`` is the core: reset draws z_0 from the first frames of stored episodes (z
sampled from their mu / log-variance, LSTM state zero), or from a later step with M's
state warmed up on the real steps before it (``start``); a step feeds [z_t, a_t] to the
LSTM and draws z_{t+1} from the mixture at temperature tau (logits / tau, noise *
sqrt(tau)), M's heads seeing the new hidden state through dropout if M was trained
with it (``MDNRNN.drop``); the episode ends when the done logit is > 0 (or, with
``done="sample"``, with the predicted probability) or at the step cap of the run's real
episodes; the reward is +1 per step for survival games (Doom) and the predicted reward
otherwise. The controller sees [z_t, h_t] or, for Doom as the paper, [z_t, c_t, h_t],
the LSTM state before step t.

``Dream.rollout`` plays N episodes to their ends for CMA-ES, dropping finished dreams
from the batch so that a population that mostly dies early costs what it lives.
``DreamEnv`` (gymnasium.Env) and ``DreamVecEnv`` (gymnasium.vector.VectorEnv) wrap it for
people and RL libraries; both are registered as ``worldmodels/Dream-v0``.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from mdn import sample_gaussian_mixture
from worldmodels.artifacts import load_latents, load_mdnrnn, run_env, run_game
from worldmodels.controller import observation, observation_size
from worldmodels.envs import get_game
from worldmodels.mdnrnn import MDNRNN

DONE_MODES = ("logit", "sample")


class DreamState(NamedTuple):
    """The state of n dreams: z ``[n, Z]``, LSTM h and c ``[n, H]``, step count t ``[n]``."""

    z: torch.Tensor
    h: torch.Tensor
    c: torch.Tensor
    t: torch.Tensor

    def select(self, index: torch.Tensor) -> DreamState:
        return DreamState(*(x[index] for x in self))


class Dream:
    """n dreams of one world model, stepped together.

    Args:
        mdnrnn: The trained M.
        initial_mu, initial_logvar: ``[E, Z]``, each stored episode's frame at ``start``.
        temperature: tau (the paper's best for Doom: 1.15).
        done: ``"logit"`` (ends when the logit > 0, as the paper) or ``"sample"``.
        max_steps: Step cap (truncation).
        survival: Reward +1 per step alive instead of the predicted reward.
        obs_c: Include the LSTM cell c in the observation ([z, c, h], Doom in the paper).
        precision: ``"float32"`` or ``"bfloat16"`` (M's weights cast once to bf16 for its
            matmuls; states and sampling stay float32). See benchmarks/dream.py.
        initial_state: ``(h, c)``, each ``[E, H]``: M's LSTM state at the initial frames
            (None: zeros, a dream from an episode's first frame).
        start: The step of the real episodes the initial frames are at (the dream's step
            count starts there, so it ends at the same cap).
    """

    def __init__(
        self,
        mdnrnn: MDNRNN,
        initial_mu: torch.Tensor,
        initial_logvar: torch.Tensor,
        temperature: float = 1.15,
        done: str = "logit",
        max_steps: int = 2100,
        survival: bool = True,
        obs_c: bool = True,
        precision: str = "float32",
        initial_state: tuple[torch.Tensor, torch.Tensor] | None = None,
        start: int = 0,
    ) -> None:
        if done not in DONE_MODES:
            raise ValueError(f"done must be one of {DONE_MODES}, got {done!r}")
        if not survival and mdnrnn.reward is None:
            raise ValueError("this game's reward must be predicted, but M has no reward head")
        if mdnrnn.done is None:
            raise ValueError("M has no done head, so a dream would never end before the cap")
        self.temperature, self.done_mode = temperature, done
        mdnrnn.eval()
        self.max_steps, self.survival, self.obs_c = max_steps, survival, obs_c
        if precision not in ("float32", "bfloat16"):
            raise ValueError(f"precision must be float32 or bfloat16, got {precision!r}")
        self.precision = precision
        # Cast once: autocast would re-cast every weight at every step, which dominates
        # the cost of the last few dreams of a rollout.
        self.dtype = torch.bfloat16 if precision == "bfloat16" else torch.float32
        self.mdnrnn = copy.deepcopy(mdnrnn).to(self.dtype) if precision == "bfloat16" else mdnrnn
        self.device = next(mdnrnn.parameters()).device
        self.initial_mu = initial_mu.to(self.device)
        self.initial_sigma = (0.5 * initial_logvar).exp().to(self.device)
        if initial_state is None:
            zeros = torch.zeros(len(initial_mu), mdnrnn.hidden_size)
            initial_state = (zeros, zeros)
        self.initial_h, self.initial_c = (x.float().to(self.device) for x in initial_state)
        self.start = start
        self.z_size, self.hidden_size = mdnrnn.z_size, mdnrnn.hidden_size
        self.action_dim = mdnrnn.action_dim
        self.obs_size = observation_size(self.z_size, self.hidden_size, obs_c)

    @classmethod
    def from_run_dir(
        cls, run_dir: str | os.PathLike, device: str = "cpu", start: int = 0, **kwargs
    ) -> Dream:
        """The dream of a run directory: its M, its latents' frames at step ``start`` (0:
        the first frames; later, M's state warmed up on the real steps before it), its
        game's rules, and the step cap its real episodes were played with
        (``collect.env.max_steps``)."""
        run_dir = Path(run_dir)
        game = get_game(run_game(run_dir))
        mdnrnn = load_mdnrnn(run_dir, torch.device(device))
        keys = ("mu", "logvar", "action") if start else ("mu", "logvar")
        episodes, z_size = load_latents(run_dir, keys, steps=start + 1)
        if z_size != mdnrnn.z_size:
            raise ValueError(
                f"{run_dir / 'latents'} has z_size={z_size} but the MDN-RNN "
                f"{run_dir / 'mdnrnn' / 'ckpt.pt'} has z_size={mdnrnn.z_size}"
            )
        episodes = [e for e in episodes if len(e["mu"]) > start]
        if not episodes:
            raise ValueError(f"no episode in {run_dir / 'latents'} reaches step {start}")
        mu = torch.from_numpy(np.stack([e["mu"][start] for e in episodes]))
        logvar = torch.from_numpy(np.stack([e["logvar"][start] for e in episodes]))
        max_steps = run_env(run_dir).get("max_steps", game.max_steps)
        defaults = dict(max_steps=max_steps, survival=game.survival, obs_c=game.survival)
        state = warm_up(mdnrnn, episodes, start) if start else None
        return cls(mdnrnn, mu, logvar, initial_state=state, start=start, **{**defaults, **kwargs})

    def reset(self, n: int, generator: torch.Generator | None = None) -> DreamState:
        pick = torch.randint(len(self.initial_mu), (n,), generator=generator, device=self.device)
        noise = torch.randn(n, self.z_size, generator=generator, device=self.device)
        z = self.initial_mu[pick] + self.initial_sigma[pick] * noise
        t = torch.full((n,), self.start, dtype=torch.long, device=self.device)
        return DreamState(z, self.initial_h[pick], self.initial_c[pick], t)

    def observe(self, state: DreamState) -> torch.Tensor:
        """The controller's input, ``[n, obs_size]``: [z, c, h] or [z, h]."""
        return observation(state.z, state.h, state.c, self.obs_c)

    @torch.no_grad()
    def step(self, state: DreamState, action: torch.Tensor, generator=None):
        """Advance every dream one step; returns (state, reward, terminated, truncated)."""
        n = len(state.z)
        if action.shape != (n, self.action_dim):
            raise ValueError(
                f"action must have shape {(n, self.action_dim)} (dreams, action_dim), "
                f"got {tuple(action.shape)}"
            )
        m = self.mdnrnn
        hc = (state.h.unsqueeze(0).to(self.dtype), state.c.unsqueeze(0).to(self.dtype))
        restart = (state.t == 0).unsqueeze(1)
        _, (h, c) = m.states(state.z.unsqueeze(1), action.to(state.z).unsqueeze(1), restart, hc)
        params, done_logit, reward = m.heads(m.drop(h.squeeze(0), generator))  # float32 mix
        h, c = h.squeeze(0).float(), c.squeeze(0).float()  # (n, H)
        done_logit = done_logit.float()
        z = sample_gaussian_mixture(params, self.temperature, generator)
        if self.done_mode == "logit":
            terminated = done_logit > 0
        else:
            # A pos_weight-w loss learns logit = log(w p / (1 - p)): undo w to sample p.
            p = torch.sigmoid(done_logit - math.log(m.done_pos_weight))
            terminated = torch.rand(n, generator=generator, device=self.device) < p
        reward = torch.ones(n, device=self.device) if self.survival else reward.float()
        t = state.t + 1
        truncated = (t >= self.max_steps) & ~terminated
        return DreamState(z, h, c, t), reward, terminated, truncated

    @torch.no_grad()
    def rollout(
        self,
        policy: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        n: int,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Play n dreams to their ends; return (returns, lengths), each ``[n]``.

        ``policy(obs, index)`` gets the observations ``[m, obs_size]`` of the m dreams still
        running and their indices in 0..n-1 (so dream i can be played by controller i), and
        returns actions ``[m, action_dim]``. Finished dreams leave the batch.
        """
        state = self.reset(n, generator)
        alive = torch.arange(n, device=self.device)
        returns = torch.zeros(n, device=self.device)
        lengths = torch.zeros(n, dtype=torch.long, device=self.device)
        while len(alive):
            action = policy(self.observe(state), alive)
            state, reward, terminated, truncated = self.step(state, action, generator)
            returns[alive] += reward
            lengths[alive] += 1
            running = ~(terminated | truncated)
            if not running.all():
                state, alive = state.select(running), alive[running]
        return returns, lengths


@torch.no_grad()
def warm_up(mdnrnn: MDNRNN, episodes: list[dict], start: int) -> tuple[torch.Tensor, torch.Tensor]:
    """M's LSTM state ``(h, c)``, each ``[E, H]``, after the first ``start`` real steps of
    each episode (z = V's mean and the recorded actions, as M runs beside the real game)."""
    device = next(mdnrnn.parameters()).device
    z = torch.from_numpy(np.stack([e["mu"][:start] for e in episodes])).to(device)
    action = np.stack([e["action"][:start] for e in episodes]).astype(np.float32)
    restart = torch.zeros(z.shape[:2], device=device)
    restart[:, 0] = 1.0
    _, (h, c) = mdnrnn.states(z, torch.from_numpy(action).to(device), restart)
    return h[0].float(), c[0].float()
