"""Does the CarRacing dream see a car on the grass, and does it charge for it?

A CarRacing controller that leaves the road loses the game's tile rewards; one that
stays on it collects them. For each controller (a run directory's ``controller/best.pt``
or any checkpoint of the controller stage) the script plays real tracks and dreams of
RUN_DIR's M and prints, per controller:

- real game: return, share of the track's tiles visited, speed, the share of steps on
  the grass (no wheel on a road tile), gas and |steer|; the real reward per step on the
  grass and on the road, and what M's reward head predicted for the same steps (teacher
  forcing: M follows the real z and actions);
- dream (tau 1.0, M's own dropout; from the stored episodes' first frames, or from step
  ``--start`` with M's state warmed up on the steps before it): return and the share of
  steps on the grass, judged from the frames V decodes from the dreamt z, with the
  predicted reward per step on the grass and on the road;
- the share on the grass by step (1-25, 26-50, ... 501-1,000) in the game and the dream.

"On the grass" in a frame: most pixels around the car (rows 46-60, columns 26-38 of
the 64x64 frame, the car's own pixels excluded) are green. The script prints how often
that rule agrees with the game's wheels, on the real frames and on V's reconstructions,
so the dream's figure can be read with its error.

    python analysis/carracing_grass.py RUN_DIR CKPT [CKPT ...] [--tracks 10] [--start 50]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from worldmodels.agent import Agent
from worldmodels.controller import held
from worldmodels.dream import Dream
from worldmodels.stages.controller import episode_seeds
from worldmodels.vae import to_frames

AROUND_CAR = (slice(46, 61), slice(26, 39))
CAR = (slice(48, 60), slice(29, 35))
SPANS = ((0, 25), (25, 50), (50, 100), (100, 200), (200, 500), (500, 1000))


def on_grass(frames: np.ndarray) -> np.ndarray:
    """Which frames ``[..., 64, 64, 3]`` (0-255) show the car on the grass."""
    rgb = frames.astype(np.int16)
    green = rgb[..., 1] - rgb[..., 0] > 40
    mask = np.zeros(frames.shape[-3:-1], bool)
    mask[AROUND_CAR] = True
    mask[CAR] = False
    return green[..., mask].mean(-1) > 0.5


def decode(vae, z: torch.Tensor, batch: int = 1024) -> np.ndarray:
    frames = [vae.decode(z[i : i + batch]) for i in range(0, len(z), batch)]
    return to_frames(torch.cat(frames))


def split(values: np.ndarray, grass: np.ndarray) -> str:
    def mean(x):
        return f"{x.mean():+.3f}" if x.size else "  -   "

    return f"grass {mean(values[grass])}, road {mean(values[~grass])}"


@torch.no_grad()
def real(agent: Agent, w: torch.Tensor, seeds: list[int]) -> dict:
    keys = ("grass", "speed", "gas", "steer", "reward", "predicted")
    tracks = [play_track(agent, w, seed) for seed in seeds]
    out = {k: np.concatenate([track[k] for track in tracks]) for k in keys}
    out["rule"] = np.concatenate([on_grass(track.pop("frame")) for track in tracks])
    out["rule_recon"] = on_grass(decode(agent.vae, torch.cat([t["mu"] for t in tracks])))
    out["step"] = np.concatenate([np.arange(1, len(track["grass"]) + 1) for track in tracks])
    out["return"] = np.array([track["return"] for track in tracks])
    out["tiles"] = np.array([track["tiles"][-1] / track["n_tiles"] for track in tracks])
    return out


def play_track(agent: Agent, w: torch.Tensor, seed: int) -> dict:
    """Play one real track with controller ``w``: its return and number of tiles, and per
    step whether the car is on the grass (no wheel on a road tile), its speed and position,
    the tiles visited so far, gas, |steer|, the real reward and M's prediction of it, V's
    mu and the frame."""
    env, mdnrnn, controller = agent.env.unwrapped, agent.mdnrnn, agent.controller
    act = held(lambda obs: controller.act(w, obs), controller.repeat)
    keys = ("grass", "speed", "xy", "tiles", "gas", "steer", "reward", "predicted", "mu", "frame")
    rec = {k: [] for k in keys}

    def on_step(frame, mu, logvar, action, h, reward, *_):
        v = env.car.hull.linearVelocity
        rec["grass"].append(all(len(wheel.tiles) == 0 for wheel in env.car.wheels))
        rec["speed"].append(float(np.hypot(v[0], v[1])))
        rec["xy"].append(tuple(env.car.hull.position))
        rec["tiles"].append(env.tile_visited_count)
        rec["gas"].append(float(action[0, 1]))
        rec["steer"].append(abs(float(action[0, 0])))
        rec["reward"].append(reward)
        rec["predicted"].append(float(mdnrnn.heads(h)[2][0]))
        rec["mu"].append(mu[0])
        rec["frame"].append(frame)

    total, _ = agent._episode(seed, lambda frame, obs: act(obs), on_step)
    out = {k: np.array(v) for k, v in rec.items() if k != "mu"}
    out["mu"] = torch.stack(rec["mu"])
    out["return"], out["n_tiles"] = total, len(env.track)
    return out


@torch.no_grad()
def dream(dream: Dream, vae, controller, w: torch.Tensor, n: int, seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    state = dream.reset(n, generator)
    alive = torch.arange(n)
    act = controller.dream_policy(w[None], torch.zeros(n, dtype=torch.long))
    returns, zs, rewards, steps = torch.zeros(n), [], [], []
    while len(alive):
        action = act(dream.observe(state), alive)
        state, reward, terminated, truncated = dream.step(state, action, generator)
        zs.append(state.z)
        rewards.append(reward)
        steps.append(state.t)
        returns[alive] += reward
        running = ~(terminated | truncated)
        state, alive = state.select(running), alive[running]
    grass = on_grass(decode(vae, torch.cat(zs)))
    return {"return": returns.numpy(), "grass": grass, "predicted": torch.cat(rewards).numpy(),
            "step": torch.cat(steps).numpy()}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="the run directory whose V and M are used")
    parser.add_argument("ckpts", nargs="+", help="controller checkpoints (controller/best.pt)")
    parser.add_argument("--tracks", type=int, default=10, help="real tracks (evaluate seeds)")
    parser.add_argument("--eval-seed", type=int, default=12345)
    parser.add_argument("--dreams", type=int, default=64)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--start", type=int, default=0, help="the dreams' start step")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    seeds = episode_seeds(args.eval_seed, 0, args.tracks)
    the_dream = Dream.from_run_dir(args.run_dir, start=args.start, temperature=1.0)
    for path in args.ckpts:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        agent = Agent.from_run_dir(args.run_dir, ckpt["controller"])
        w = torch.as_tensor(ckpt["params"], dtype=torch.float32)
        r = real(agent, w, seeds)
        d = dream(the_dream, agent.vae, agent.controller, w, args.dreams, args.seed)
        agent.close()
        print(path)
        report(r, d)


def report(r: dict, d: dict) -> None:
    print(
        f"  real ({len(r['return'])} tracks): return {r['return'].mean():.1f}, "
        f"tiles {r['tiles'].mean():.2f}, speed {r['speed'].mean():.1f}, "
        f"grass {r['grass'].mean():.2f}, gas {r['gas'].mean():.2f}, "
        f"|steer| {r['steer'].mean():.2f}"
    )
    print(
        f"    reward per step: real {split(r['reward'], r['grass'])}; "
        f"M's {split(r['predicted'], r['grass'])}"
    )
    print(
        f"    the pixel rule agrees with the wheels on {(r['rule'] == r['grass']).mean():.2f} "
        f"of the frames, {(r['rule_recon'] == r['grass']).mean():.2f} of V's reconstructions "
        f"(grass by the rule: {r['rule'].mean():.2f} and {r['rule_recon'].mean():.2f})"
    )
    print(f"  dream ({len(d['return'])}): return {d['return'].mean():.1f}, grass by the rule "
          f"{d['grass'].mean():.2f}; predicted reward per step "
          f"{split(d['predicted'], d['grass'])}")  # fmt: skip
    print("  on the grass by step: real (wheels / V's frames), dream (V's frames)")
    for a, b in SPANS:
        shares = []
        for run, key in ((r, "grass"), (r, "rule_recon"), (d, "grass")):
            span = (run["step"] > a) & (run["step"] <= b)
            shares.append(f"{run[key][span].mean():.2f}" if span.any() else "-")
        print(f"    {a + 1}-{b}: real {shares[0]} / {shares[1]}, dream {shares[2]}", flush=True)


if __name__ == "__main__":
    main()
