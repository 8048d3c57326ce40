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
from worldmodels.controller import Controller, held, observation, observation_size
from worldmodels.envs import get_game, make_env
from worldmodels.executor import Work, executor
from worldmodels.mdnrnn import MDNRNN
from worldmodels.vae import ConvVAE, to_frames, to_input


class Agent:
    """A world model (V and M) able to play controllers in the real game, with the game
    settings its episodes were collected with. ``controller``: the shape of the
    controllers it plays (``Controller.spec``; None: the game's default)."""

    def __init__(
        self,
        game_name: str,
        env: dict,
        vae: ConvVAE,
        mdnrnn: MDNRNN,
        controller: dict | None = None,
    ) -> None:
        torch.set_num_threads(1)  # one agent per worker process
        self.game_name, self.game = game_name, get_game(game_name)
        self.vae, self.mdnrnn = vae.eval(), mdnrnn.eval()
        self.env = make_env(game_name, **env)
        obs_size = observation_size(self.vae.z_size, self.mdnrnn.hidden_size, self.game.survival)
        default = (obs_size, self.game.action_dim, self.game.controller_bias, self.game.squash)
        self.controller = Controller(**controller) if controller else Controller(*default)

    @classmethod
    def from_run_dir(cls, run_dir, controller: dict | None = None) -> Agent:
        """The agent of a run directory: its trained V and M, its game and game settings."""
        return cls(*agent_args(run_dir), controller)

    def close(self) -> None:
        self.env.close()

    @torch.no_grad()
    def play(self, params: np.ndarray | None, seed: int, record: bool = False) -> dict:
        """One episode; ``params=None`` plays the game's random data policy instead. C acts
        every ``controller.repeat`` steps and holds its action in between.

        With ``record``, also returns ``frames``: real frame | V's reconstruction | the
        frame M predicted for this step (its mixture's mode, decoded), side by side.
        """
        if params is None:
            policy = self.game.random_policy(np.random.default_rng(seed))
            choose = lambda frame, obs: torch.from_numpy(policy(frame))[None]  # noqa: E731
        else:
            w = torch.tensor(params, dtype=torch.float32)  # a copy
            act = lambda frame, obs: self.controller.act(w, obs)  # noqa: E731
            choose = held(act, self.controller.repeat)
        frames, predicted = [], None

        def keep(frame, mu, logvar, action, h, *outcome) -> None:
            nonlocal predicted
            frames.append(self._side_by_side(frame, mu, predicted))
            predicted = self.mdnrnn.mdn(h).mode()

        total, steps = self._episode(seed, choose, keep if record else None)
        return {"return": total, "length": steps, "frames": frames}

    @torch.no_grad()
    def explore(
        self, params: np.ndarray, seed: int, chance: float, hold: int, policy: dict
    ) -> dict[str, np.ndarray]:
        """One episode of the controller with random exploration, recorded as M's training
        data (the paper's iterative training): at each step, with probability ``chance``,
        the game's data policy (made with the settings ``policy``) takes over for 1 to
        ``hold`` steps (C acts on every ``repeat``-th of its own steps and holds its action
        in between). Returns what the encode stage writes for an episode (V's mu and logvar
        of every frame, the actions, rewards and ends) and the episode's return."""
        rng = np.random.default_rng(seed)
        w = torch.tensor(params, dtype=torch.float32)
        act = held(lambda obs: self.controller.act(w, obs), self.controller.repeat)
        data_policy, left = None, 0

        def choose(frame, obs) -> torch.Tensor:
            nonlocal data_policy, left
            if left == 0 and rng.random() < chance:
                data_policy = self.game.random_policy(rng, **policy)
                left = int(rng.integers(1, hold + 1))
            if left == 0:
                return act(obs)
            left -= 1
            return torch.from_numpy(np.asarray(data_policy(frame), np.float32))[None]

        steps = {key: [] for key in ("mu", "logvar", "action", "reward", "terminated",
                                     "truncated")}  # fmt: skip

        def keep(frame, mu, logvar, action, h, *outcome) -> None:
            for key, value in zip(steps, (mu[0], logvar[0], action[0], *outcome), strict=True):
                steps[key].append(np.asarray(value))

        total, _ = self._episode(seed, choose, keep)
        episode = {key: np.stack(values).astype(np.float32) for key, values in steps.items()}
        episode["terminated"] = episode["terminated"].astype(bool)
        episode["truncated"] = episode["truncated"].astype(bool)
        return episode | {"return": np.float64(total)}

    def _episode(self, seed: int, choose, on_step=None) -> tuple[float, int]:
        """Play one episode from the env seed ``seed``: ``choose(frame, obs)`` gives the
        action ``[1, A]`` (``obs``: C's input [z, (c,) h]); then M steps on [z, a]. After each
        step, ``on_step(frame, mu, logvar, action, h, reward, terminated, truncated)`` with
        M's new h. Returns (return, length)."""
        frame, _ = self.env.reset(seed=seed)
        h = c = torch.zeros(1, self.mdnrnn.hidden_size)
        total, steps, done = 0.0, 0, False
        while not done:
            mu, logvar = self.vae.encode(to_input(torch.from_numpy(frame[None])))
            action = choose(frame, observation(mu, h, c, self.game.survival))
            restart, state = torch.tensor([[steps == 0]]), (h[None], c[None])
            _, (h, c) = self.mdnrnn.states(mu[:, None], action[:, None], restart, state)
            h, c = h[0], c[0]
            next_frame, reward, terminated, truncated, _ = self.env.step(action[0].numpy())
            if on_step is not None:
                on_step(frame, mu, logvar, action, h, reward, terminated, truncated)
            frame, total, steps = next_frame, total + reward, steps + 1
            done = terminated or truncated
        return total, steps

    def _side_by_side(self, frame, mu, predicted) -> np.ndarray:
        recon = self._decode(mu)
        dream = self._decode(predicted) if predicted is not None else np.zeros_like(frame)
        return np.concatenate([frame, recon, dream], 1)

    def _decode(self, z: torch.Tensor) -> np.ndarray:
        return to_frames(self.vae.decode(z))[0]


def agent_args(run_dir) -> tuple:
    """``Agent``'s arguments, read from a run directory: (game, game settings, V, M)."""
    return run_game(run_dir), run_env(run_dir), load_vae(run_dir), load_mdnrnn(run_dir)


def agent_work(run_dir, controller: dict | None = None, play=None, name=None) -> Work:
    """Real-game episodes of a run directory's agent, for the rollout executor: by
    default a job is (controller parameters or None for the random data policy, env
    seed), ``play(agent, job)`` and ``name(job)`` otherwise; ``controller`` is the
    controllers' shape (``Controller.spec``; None: the game's default). The world model
    travels with the work, so workers need no access to the run directory."""
    args = (*agent_args(run_dir), controller)
    return Work(args[0], Agent, args, play or _play, name or _name)


def _play(agent: Agent, job: tuple) -> tuple[float, int]:
    result = agent.play(*job)
    return result["return"], result["length"]


def _name(job: tuple) -> str:
    params, seed = job
    who = "the random policy" if params is None else "a controller"
    return f"real-game episode of {who} (env seed {seed})"


def play_episodes(
    run_dir,
    jobs: list[tuple[np.ndarray | None, int]],
    workers: int | None = None,
    controller: dict | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Play (params, seed) jobs in the real game with the rollout executor
    (``worldmodels.executor``), params being controllers of the shape ``controller``
    (``Controller.spec``; None: the game's default); return (returns, lengths) in job
    order."""
    results = executor(workers).map(agent_work(run_dir, controller), jobs)
    returns, lengths = zip(*results, strict=True) if results else ((), ())
    return np.array(returns, dtype=np.float64), np.array(lengths, dtype=np.int64)
