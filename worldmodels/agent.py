"""V + M + C playing the real game, and many such episodes played by the rollout executor.

In the real game the agent encodes each frame with V (z = mu, the encoder's mean),
acts on [z, (c,) h] with C, then steps M's LSTM on [z, a] to get the next h, as in the
paper's Figure 8. ``play_episodes`` plays a list of (controller, env seed) jobs with the
rollout executor (``worldmodels.executor``: worker processes or a Ray cluster; lost and
hung episodes are played again, see there).
"""

from __future__ import annotations

import numpy as np
import torch

from worldmodels.artifacts import load_mdnrnn, load_vae, run_env, run_game
from worldmodels.controller import Controller, observation, observation_size
from worldmodels.envs import get_game, make_env
from worldmodels.executor import Work, executor
from worldmodels.mdnrnn import MDNRNN
from worldmodels.vae import ConvVAE, to_input


class Agent:
    """A world model (V and M) able to play controllers in the real game, with the game
    settings its episodes were collected with."""

    def __init__(self, game_name: str, env: dict, vae: ConvVAE, mdnrnn: MDNRNN) -> None:
        torch.set_num_threads(1)  # one agent per worker process
        self.game_name, self.game = game_name, get_game(game_name)
        self.vae, self.mdnrnn = vae.eval(), mdnrnn.eval()
        self.env = make_env(game_name, **env)
        obs_size = observation_size(self.vae.z_size, self.mdnrnn.hidden_size, self.game.survival)
        self.controller = Controller(obs_size, self.game.action_dim, self.game.controller_bias,
                                     self.game.squash)  # fmt: skip

    @classmethod
    def from_run_dir(cls, run_dir) -> Agent:
        """The agent of a run directory: its trained V and M, its game and game settings."""
        return cls(*agent_args(run_dir))

    def close(self) -> None:
        self.env.close()

    @torch.no_grad()
    def play(self, params: np.ndarray | None, seed: int, record: bool = False) -> dict:
        """One episode; ``params=None`` plays the game's random data policy instead.

        With ``record``, also returns ``frames``: real frame | V's reconstruction | the
        frame M predicted for this step (its mixture's mode, decoded), side by side.
        """
        frame, _ = self.env.reset(seed=seed)
        policy = (
            None if params is not None else self.game.random_policy(np.random.default_rng(seed))
        )
        w = None if params is None else torch.tensor(params, dtype=torch.float32)  # a copy
        h = c = torch.zeros(1, self.mdnrnn.hidden_size)
        total, steps, frames, predicted, done = 0.0, 0, [], None, False
        while not done:
            mu, _ = self.vae.encode(to_input(torch.from_numpy(frame[None])))
            if policy is not None:
                action = torch.from_numpy(policy(frame))[None]
            else:
                action = self.controller.act(w, observation(mu, h, c, self.game.survival))
            if record:
                frames.append(self._side_by_side(frame, mu, predicted))
            restart, state = torch.tensor([[steps == 0]]), (h[None], c[None])
            _, (h, c) = self.mdnrnn.states(mu[:, None], action[:, None], restart, state)
            h, c = h[0], c[0]
            if record:
                predicted = self.mdnrnn.mdn(h).mode()
            frame, reward, terminated, truncated, _ = self.env.step(action[0].numpy())
            total, steps, done = total + reward, steps + 1, terminated or truncated
        return {"return": total, "length": steps, "frames": frames}

    def _side_by_side(self, frame, mu, predicted) -> np.ndarray:
        recon = self._decode(mu)
        dream = self._decode(predicted) if predicted is not None else np.zeros_like(frame)
        return np.concatenate([frame, recon, dream], 1)

    def _decode(self, z: torch.Tensor) -> np.ndarray:
        return self.vae.decode(z)[0].permute(1, 2, 0).mul(255).round().byte().numpy()


def agent_args(run_dir) -> tuple:
    """``Agent``'s arguments, read from a run directory: (game, game settings, V, M)."""
    return run_game(run_dir), run_env(run_dir), load_vae(run_dir), load_mdnrnn(run_dir)


def agent_work(run_dir) -> Work:
    """Real-game episodes of a run directory's agent, for the rollout executor: a job is
    (controller parameters or None for the random data policy, env seed). The world
    model travels with the work, so workers need no access to the run directory."""
    args = agent_args(run_dir)
    return Work(args[0], Agent, args, _play, _name)


def _play(agent: Agent, job: tuple) -> tuple[float, int]:
    result = agent.play(*job)
    return result["return"], result["length"]


def _name(job: tuple) -> str:
    params, seed = job
    who = "the random policy" if params is None else "a controller"
    return f"real-game episode of {who} (env seed {seed})"


def play_episodes(
    run_dir, jobs: list[tuple[np.ndarray | None, int]], workers: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Play (params, seed) jobs in the real game with the rollout executor
    (``worldmodels.executor``); return (returns, lengths) in job order."""
    results = executor(workers).map(agent_work(run_dir), jobs)
    returns, lengths = zip(*results, strict=True) if results else ((), ())
    return np.array(returns, dtype=np.float64), np.array(lengths, dtype=np.int64)
