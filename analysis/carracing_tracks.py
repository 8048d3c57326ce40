"""Where does a CarRacing controller stop collecting tiles on its worst tracks?

The script plays again the tracks on which a controller scored least in an evaluate
stage (``--results``: that stage's ``results.json``, with the env seeds and the real
scores; by default RUN_DIR's) with each controller checkpoint given (the evaluated one,
and others to compare on the same tracks), and prints per track: return, share of the
track's tiles visited, share of steps on the grass (no wheel on a road tile), mean
speed, the last step at which the car reached a new tile and, after it, the share on
the grass, the range of track tiles nearest the car, how often it came back to where it
stopped progressing, and the reward M's reward head predicted for those steps (the game
pays -0.1 a step without a new tile). A car that leaves the road for good is on the
grass after it; a car that goes round in circles stays near the same tiles and comes
back to them again and again.

    python analysis/carracing_tracks.py RUN_DIR CKPT [CKPT ...] [--worst 12] [--picture OUT.png]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch
from carracing_grass import play_track

from worldmodels.agent import Agent


def play(agent: Agent, w: torch.Tensor, seed: int) -> dict:
    """One real track (``carracing_grass.play_track``), with the index of the track tile
    nearest the car at each step."""
    out = play_track(agent, w, seed)
    centres = np.array([(x, y) for *_, x, y in agent.env.unwrapped.track])
    out["nearest"] = np.argmin(((out["xy"][:, None] - centres[None]) ** 2).sum(-1), 1)
    return out


def describe(index: int, seed: int, r: dict) -> str:
    tiles, nearest = r["tiles"], r["nearest"]
    stop = int(np.argmax(tiles == tiles[-1]))  # the step that reached the last new tile
    line = (
        f"track {index} (seed {seed}): return {r['return']:.1f}, "
        f"tiles {tiles[-1] / r['n_tiles']:.2f}, grass {r['grass'].mean():.2f}, "
        f"speed {r['speed'].mean():.1f}; last new tile at step {stop + 1} of {len(tiles)}"
    )
    after = slice(stop + 1, None)
    if len(tiles) - stop < 50:
        return line
    near = nearest[after]
    away = np.abs(near - nearest[stop]) > 2
    returns = int((away[:-1] & ~away[1:]).sum())  # came back near where it stopped
    return (
        f"{line}; after it: grass {r['grass'][after].mean():.2f}, "
        f"speed {r['speed'][after].mean():.1f}, nearest tiles {near.min()}-{near.max()}, "
        f"back at tile {nearest[stop]} {returns} times; M's reward "
        f"{r['predicted'][after].mean():+.2f} a step"
    )


def picture(r: dict, path: str, every: int = 5, count: int = 40) -> None:
    """Frames every ``every`` steps from 50 steps before the last new tile, 10 a row."""
    stop = int(np.argmax(r["tiles"] == r["tiles"][-1]))
    frames = r["frame"][max(0, stop - 50) :: every][:count]
    frames = np.concatenate([frames, np.zeros((-len(frames) % 10, *frames.shape[1:]), np.uint8)])
    rows = [np.concatenate(list(frames[i : i + 10]), 1) for i in range(0, len(frames), 10)]
    cv2.imwrite(path, np.concatenate(rows, 0)[..., ::-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="the run directory whose V and M are used")
    parser.add_argument("ckpts", nargs="+", help="controller checkpoints (controller/best.pt)")
    parser.add_argument("--results", help="an evaluate stage's results.json "
                        "(default: RUN_DIR/evaluate/results.json)")  # fmt: skip
    parser.add_argument("--worst", type=int, default=12, help="how many of its worst tracks")
    parser.add_argument("--picture", help="a picture of the first controller's worst track")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    path = Path(args.results or Path(args.run_dir) / "evaluate" / "results.json")
    if not path.is_file():
        parser.error(f"{path}: no such file (give --results, an evaluate stage's results.json)")
    results = json.loads(path.read_text())
    if "seeds" not in results or "scores" not in results.get("real", {}):
        parser.error(f"{path}: no 'seeds' and 'real.scores': not an evaluate stage's results")
    scores, seeds = np.array(results["real"]["scores"]), results["seeds"]
    worst = np.argsort(scores, kind="stable")[: args.worst]
    for n, ckpt_path in enumerate(args.ckpts):
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        agent = Agent.from_run_dir(args.run_dir, ckpt["controller"])
        w = torch.as_tensor(ckpt["params"], dtype=torch.float32)
        print(ckpt_path, flush=True)
        for i in worst:
            r = play(agent, w, seeds[i])
            print("  " + describe(int(i), seeds[i], r), flush=True)
            if n == 0 and i == worst[0] and args.picture:
                picture(r, args.picture)
        agent.close()


if __name__ == "__main__":
    main()
