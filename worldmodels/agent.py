"""V + M + C playing the real game, and many such episodes spread over worker processes.

In the real game the agent encodes each frame with V (z = mu, the encoder's mean),
acts on [z, (c,) h] with C, then steps M's LSTM on [z, a] to get the next h, as in the
paper's Figure 8. ``play_episodes`` runs a list of (controller, env seed) jobs on
worker processes; a job whose worker dies is retried once, a job that takes longer than
``timeout`` seconds counts as hung, and neither ever blocks the run forever.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import torch

from worldmodels.artifacts import load_mdnrnn, load_vae, run_env, run_game
from worldmodels.controller import Controller, observation, observation_size
from worldmodels.envs import get_game, make_env
from worldmodels.vae import to_input


class Agent:
    """The world model of a run directory, able to play controllers in the real game (with
    the game settings its episodes were collected with)."""

    def __init__(self, run_dir) -> None:
        torch.set_num_threads(1)  # one agent per worker process
        self.game_name = run_game(run_dir)
        self.game = get_game(self.game_name)
        self.vae, self.mdnrnn = load_vae(run_dir), load_mdnrnn(run_dir)
        self.env = make_env(self.game_name, **run_env(run_dir))
        obs_size = observation_size(self.vae.z_size, self.mdnrnn.hidden_size, self.game.survival)
        self.controller = Controller(obs_size, self.game.action_dim, self.game.controller_bias,
                                     self.game.squash)  # fmt: skip

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
        w = None if params is None else torch.as_tensor(params, dtype=torch.float32)
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


_AGENT: Agent | None = None


def _init(run_dir: str) -> None:
    global _AGENT
    _AGENT = Agent(run_dir)


def _job(params, seed) -> tuple[float, int]:
    result = _AGENT.play(params, seed)
    return result["return"], result["length"]


def play_episodes(
    run_dir,
    jobs: list[tuple[np.ndarray | None, int]],
    workers: int = 0,
    timeout: float = 600.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Play (params, seed) jobs in the real game; return (returns, lengths) in job order.

    ``workers=0`` plays in this process. A job whose worker process crashes or hangs is
    retried once on a fresh pool; a second failure raises RuntimeError naming the job.
    """
    returns, lengths = np.zeros(len(jobs)), np.zeros(len(jobs), dtype=np.int64)
    if workers == 0:
        _init(str(run_dir))
        for i, (params, seed) in enumerate(jobs):
            returns[i], lengths[i] = _job(params, seed)
        return returns, lengths
    attempts, todo = dict.fromkeys(range(len(jobs)), 0), set(range(len(jobs)))
    while todo:
        for i in todo:
            attempts[i] += 1
            if attempts[i] > 2:
                raise RuntimeError(
                    f"real-game episode {i} (env seed {jobs[i][1]}) failed twice: its worker "
                    "crashed or hung; see the worker's error above"
                )
        done = _run_pool(run_dir, jobs, sorted(todo), workers, timeout)
        for i, (ret, length) in done.items():
            returns[i], lengths[i] = ret, length
            todo.discard(i)
        if todo:
            print(f"agent: {len(todo)} real-game episode(s) lost to a crashed or hung worker; "
                  "retrying them once")  # fmt: skip
    return returns, lengths


def _run_pool(run_dir, jobs, indices, workers, timeout) -> dict:
    """Run the jobs ``indices``; return those that finished before a crash or hang."""
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init,
                               initargs=(str(run_dir),))  # fmt: skip
    futures = {pool.submit(_job, *jobs[i]): i for i in indices}
    finished, last_progress, healthy = {}, time.monotonic(), False
    try:
        while futures:
            done, _ = wait(futures, timeout=5, return_when=FIRST_COMPLETED)
            for future in done:
                i = futures.pop(future)
                try:
                    finished[i] = future.result()
                except BrokenProcessPool:
                    return finished
                last_progress = time.monotonic()
            if not done and time.monotonic() - last_progress > timeout:
                return finished  # hung: no episode finished for `timeout` seconds
        healthy = True
    finally:
        if healthy:
            pool.shutdown(wait=True)
        else:  # a crashed or hung worker would keep a clean shutdown waiting forever
            for process in list(getattr(pool, "_processes", {}).values()):
                process.kill()
            pool.shutdown(wait=False, cancel_futures=True)
    return finished
