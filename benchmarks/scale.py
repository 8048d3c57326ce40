"""Scale-out: Ray's overhead on one collection job, and the paper-scale experiments' wall
time on 2 to 256 cores, estimated from costs measured here, in one run.

(1) The same DoomTakeCover collection (same seeds) with the rollout executor's ``local``
backend and its ``ray`` backend (a Ray instance on this machine, started before the
clock), at the same number of workers: Ray's time as a ratio of local, end to end and
in the steady state (the difference between a job of N and one of N/4 episodes, which
leaves out both backends' fixed start-up; goal <= 1.10).

(2) Per-step costs on this machine, each measured on one core (Doom and CarRacing
collection per frame, the agent's real-game step: game + V + M + C, V and M training,
the batched dream), and from them the wall time of ``experiments/doom_takecover.yaml``
and ``experiments/carracing.yaml`` with the paper's 1,800 generations of real-game
fitness, on 2, 16, 64 and 256 cores. Real-game episodes spread over the cores (in
waves: a CMA-ES generation of 1,024 CarRacing episodes on 256 cores is 4 episode
lengths); V, M and the dream run on one machine (this one's CPU: a GPU is faster).

    python benchmarks/scale.py [--episodes 200] [--workers 2]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import tempfile
import time

import numpy as np
import torch

from worldmodels import executor
from worldmodels.agent import Agent
from worldmodels.dream import Dream
from worldmodels.envs import get_game, make_env
from worldmodels.executor import RuntimeConfig
from worldmodels.mdnrnn import MDNRNN
from worldmodels.rollouts import encode_episode
from worldmodels.runtime import autocast
from worldmodels.stages.collect import CollectConfig, collect, play_episode
from worldmodels.stages.mdnrnn import MDNRNNConfig, build_mdnrnn
from worldmodels.vae import ConvVAE

CORES = (2, 16, 64, 256)
SIZES = {"doom_takecover": (64, 512), "carracing": (32, 256)}
"""z and LSTM size of each paper-scale experiment's V and M."""


def collection(backend: str, episodes: int, workers: int) -> tuple[float, int]:
    """(seconds, frames) of collecting ``episodes`` DoomTakeCover episodes on ``backend``."""
    with tempfile.TemporaryDirectory() as tmp, executor.use(RuntimeConfig(backend=backend)):
        start = time.perf_counter()
        stats = collect(CollectConfig(episodes=episodes, workers=workers), tmp)
        return time.perf_counter() - start, stats["new_frames"]


def frame_cost(game: str, episodes: int) -> float:
    """Seconds per collected frame on one core: a worker's steady state (random policy,
    frame processing, the compressed episode), after a warm-up episode."""
    env, spec = make_env(game), get_game(game)
    encode_episode(play_episode(env, spec, 1, 0))
    start, frames = time.perf_counter(), 0
    for i in range(episodes):
        episode = play_episode(env, spec, 0, i, spec.min_length)
        encode_episode(episode)
        frames += len(episode["obs"])
    env.close()
    return (time.perf_counter() - start) / frames


def models(game: str) -> tuple[ConvVAE, MDNRNN]:
    z, hidden = SIZES[game]
    torch.manual_seed(0)
    return ConvVAE(z), build_mdnrnn(MDNRNNConfig(hidden_size=hidden), game, z)


def agent_step(game: str, steps: int) -> float:
    """Seconds per real-game step of V + M + C playing ``game`` (one thread)."""
    agent = Agent(game, {"max_steps": steps}, *models(game))
    params = np.random.default_rng(0).normal(0, 0.1, agent.controller.n_params)
    agent.play(params, seed=0)  # start-up, not timed
    start = time.perf_counter()
    length = agent.play(params, seed=1)["length"]
    seconds = (time.perf_counter() - start) / length
    agent.close()
    return seconds


def best_precision(measure) -> float:
    """The faster of float32 and bf16, as the stages' ``precision: auto`` picks."""
    return max(measure("float32"), measure("bfloat16"))


def train_rate(model: torch.nn.Module, batch, items: int, precision: str, repeats: int = 2):
    """Items (frames or sequence steps) per second of forward + backward + Adam step."""
    optimizer, best = torch.optim.Adam(model.parameters()), math.inf
    for i in range(repeats + 1):
        start = time.perf_counter()
        with autocast(torch.device("cpu"), precision):
            loss, _ = model.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i:  # the first builds kernels
            best = min(best, time.perf_counter() - start)
    return items / best


def v_rate(precision: str) -> float:
    frames = torch.randint(0, 256, (100, 64, 64, 3), dtype=torch.uint8)
    return train_rate(ConvVAE(64), frames, 100, precision)


def m_rate(game: str, precision: str, batch: int = 8, seq: int = 500) -> float:
    _, mdnrnn = models(game)
    z, a = mdnrnn.z_size, mdnrnn.action_dim
    ones = torch.ones(batch, seq, dtype=torch.bool)
    data = {"z": torch.randn(batch, seq, z), "z_next": torch.randn(batch, seq, z),
            "action": torch.rand(batch, seq, a), "restart": torch.zeros_like(ones),
            "mask": ones, "z_mask": ones, "done": torch.zeros(batch, seq),
            "reward": torch.zeros(batch, seq)}  # fmt: skip
    return train_rate(mdnrnn.train(), data, batch * seq, precision)


def dream_rate(precision: str, n: int = 1024, steps: int = 20) -> float:
    """Agent-steps/s of ``n`` Doom-size dreams stepped as one batch."""
    _, mdnrnn = models("doom_takecover")
    dream = Dream(mdnrnn, torch.randn(100, 64), torch.full((100, 64), -4.0), max_steps=10**9,
                  precision=precision)  # fmt: skip
    gen = torch.Generator().manual_seed(0)
    state, action = dream.reset(n, gen), torch.zeros(n, 1)
    state, *_ = dream.step(state, action, gen)
    start = time.perf_counter()
    for _ in range(steps):
        state, *_ = dream.step(state, action, gen)
    return n * steps / (time.perf_counter() - start)


def spread(episodes: int, steps: float, seconds_per_step: float, cores: int) -> float:
    """Wall seconds of ``episodes`` real episodes of ``steps`` steps on ``cores`` cores,
    in waves of ``cores`` episodes."""
    return math.ceil(episodes / cores) * steps * seconds_per_step


def hours(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} h" if seconds >= 360 else f"{seconds / 60:,.1f} min"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    # (1) Ray's overhead: the same jobs on both backends, Ray started before the clock.
    # A small and a full job: their difference is the steady state, without start-up.
    small, full = args.episodes // 4, args.episodes
    local = [collection("local", k, args.workers) for k in (small, full)]
    start = time.perf_counter()
    ray = executor.connect(None)
    ray_start = time.perf_counter() - start
    on_ray = [collection("ray", k, args.workers) for k in (small, full)]
    ray.shutdown()
    assert [f for _, f in on_ray] == [f for _, f in local], "the backends collected differently"

    # (2) Costs: real-game work per core, training and dreams on the whole machine.
    torch.set_num_threads(1)
    doom_frame, car_frame = frame_cost("doom_takecover", 10), frame_cost("carracing", 2)
    doom_agent, car_agent = agent_step("doom_takecover", 300), agent_step("carracing", 300)
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    v, dream = best_precision(v_rate), best_precision(dream_rate)
    m_doom = best_precision(lambda p: m_rate("doom_takecover", p))
    m_car = best_precision(lambda p: m_rate("carracing", p))

    cores = len(os.sched_getaffinity(0))
    (small_s, _), (full_s, frames) = local
    (ray_small_s, _), (ray_full_s, _) = on_ray
    steady = (ray_full_s - ray_small_s) / (full_s - small_s)
    doom_length = frames / full  # the mean random-policy episode, from the larger job
    print(f"\nmachine: {platform.processor() or platform.machine()}, {cores} cores, "
          f"torch {torch.__version__}")  # fmt: skip
    print(f"(1) collect DoomTakeCover, {args.workers} workers: {full} episodes ({frames} frames) "
          f"local {full_s:.1f} s, ray {ray_full_s:.1f} s: ray / local = {ray_full_s / full_s:.3f}; "
          f"{small} episodes local {small_s:.1f} s, ray {ray_small_s:.1f} s; steady state "
          f"(the difference) ray / local = {steady:.3f} (goal <= 1.10); "
          f"Ray start-up {ray_start:.1f} s, not counted")  # fmt: skip
    print("(2) costs: "
          f"collection per frame and core: Doom {doom_frame * 1e3:.2f} ms (mean episode "
          f"{doom_length:.0f} steps), CarRacing {car_frame * 1e3:.2f} ms; agent step (game + V + M "
          f"+ C): Doom {doom_agent * 1e3:.2f} ms, CarRacing {car_agent * 1e3:.2f} ms; V training "
          f"{v:.0f} frames/s; M training Doom {m_doom:.0f}, CarRacing {m_car:.0f} steps/s; "
          f"dream {dream:,.0f} agent-steps/s (Doom M, 1,024 dreams); training and dreams in "
          "float32 or bf16, whichever is faster")  # fmt: skip

    n = 10_000  # episodes per game, both experiments
    doom_frames, car_frames_all = n * doom_length, n * 1000
    doom = {
        "collect 10,000 episodes": lambda c: spread(n, doom_length, doom_frame, c),
        "V, 10 epochs (one machine)": lambda c: 10 * doom_frames / v,
        "M, 20 epochs (one machine)": lambda c: 20 * doom_frames / m_doom,
        "C: 200 gen. x 1,024 dreams of at most 2,100 steps (one machine)": lambda c: (
            200 * 1024 * 2100 / dream
        ),
        "evaluate 100 + 100 random-policy episodes": lambda c: (
            spread(100, 2100, doom_agent, c) + spread(100, doom_length, doom_agent, c)
        ),
    }
    car = {
        "collect 10,000 episodes": lambda c: spread(n, 1000, car_frame, c),
        "V, 10 epochs (one machine)": lambda c: 10 * car_frames_all / v,
        "M, 20 epochs (one machine)": lambda c: 20 * car_frames_all / m_car,
        "C: 1,800 gen. x 1,024 real episodes of 1,000 steps": lambda c: (
            1800 * spread(1024, 1000, car_agent, c)
        ),
        "evaluate 100 + 100 random-policy episodes": lambda c: 2 * spread(100, 1000, car_agent, c),
    }
    for title, rows in (("DoomTakeCover (experiments/doom_takecover.yaml)", doom),
                        ("CarRacing, real-game fitness (experiments/carracing.yaml, "
                         "controller.generations=1800)", car)):  # fmt: skip
        print(f"\n{title}\n")
        print("| stage | " + " | ".join(f"{c} cores" for c in CORES) + " |")
        print("|---|" + "---|" * len(CORES))
        for name, fn in rows.items():
            print(f"| {name} | " + " | ".join(hours(fn(c)) for c in CORES) + " |")
        totals = [sum(fn(c) for fn in rows.values()) for c in CORES]
        print("| **all** | " + " | ".join(f"**{hours(t)}**" for t in totals) + " |")


if __name__ == "__main__":
    main()
