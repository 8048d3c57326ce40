"""A GIF of a run's controller in the real game beside the same controller in its dream.

Left: the real game; middle: what V makes of it (the decoded z the controller sees);
right: a dream of M at the evaluation temperature, played by the same controller and
drawn by V's decoder. The real episode is the evaluation's episode whose score is
nearest its median (a typical one, not the best), the dream's seed is fixed. Each side
stops at its own end (its last frame stays).

    python analysis/agent_clip.py runs/pretrained/doom_takecover docs/doom_agent.gif
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from worldmodels.agent import Agent
from worldmodels.artifacts import agent_dir
from worldmodels.controller import held
from worldmodels.dream_env import DreamEnv
from worldmodels.stages.controller import load_controller


def dream_frames(run_dir: Path, params: np.ndarray, temperature: float, steps: int, seed: int):
    controller, _ = load_controller(run_dir)
    env = DreamEnv(run_dir, temperature=temperature)
    obs, _ = env.reset(seed=seed)
    w, frames = torch.as_tensor(params, dtype=torch.float32), [env.render()]
    act = held(lambda obs: controller.act(w, torch.from_numpy(obs)[None])[0].numpy(),
               controller.repeat)  # fmt: skip
    for _ in range(steps - 1):
        action = act(obs)
        obs, _, terminated, truncated, _ = env.step(action)
        frames.append(env.render())
        if terminated or truncated:
            break
    return frames


def label(frame: np.ndarray, text: str) -> np.ndarray:
    out = frame.copy()
    cv2.putText(out, text, (4, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1,
                cv2.LINE_AA)  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a run directory with controller/ and evaluate/")
    parser.add_argument("out", type=Path, help="the GIF to write")
    parser.add_argument("--steps", type=int, default=700, help="steps shown at most (35 per s)")
    parser.add_argument("--every", type=int, default=3, help="keep one step in this many")
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--dream-seed", type=int, default=0)
    args = parser.parse_args()

    results = json.loads((args.run_dir / "evaluate" / "results.json").read_text())
    agent_run = agent_dir(args.run_dir)  # the last round's agent, if iterative training ran
    controller, params = load_controller(agent_run)
    scores = np.array(results["real"]["scores"])
    seed = results["seeds"][int(np.argmin(np.abs(scores - np.median(scores))))]
    temperature = results["dream"]["temperature"]
    agent = Agent.from_run_dir(agent_run, controller.spec)
    real = agent.play(params, seed, record=True)["frames"][: args.steps]
    dream = dream_frames(agent_run, params, temperature, args.steps, args.dream_seed)
    length = max(len(real), len(dream))
    frames = []
    for t in range(0, length, args.every):
        tr, td = min(t, len(real) - 1), min(t, len(dream) - 1)
        panels = [(real[tr][:, :64], f"real {tr}"), (real[tr][:, 64:128], "V sees"),
                  (dream[td], f"dream {td}")]  # fmt: skip
        side = 64 * args.scale
        big = [label(cv2.resize(p, (side, side), interpolation=cv2.INTER_NEAREST), text)
               for p, text in panels]  # fmt: skip
        frames.append(Image.fromarray(np.concatenate(big, 1)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(args.out, save_all=True, append_images=frames[1:], loop=0,
                   duration=int(1000 * args.every / 35), optimize=True)  # fmt: skip
    print(
        f"{args.out}: {len(frames)} frames; real episode (seed {seed}): {len(real)} steps, "
        f"dream (tau {temperature}, seed {args.dream_seed}): {len(dream)} steps"
    )


if __name__ == "__main__":
    main()
