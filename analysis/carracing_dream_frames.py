"""What a CarRacing dream shows: V's frames of a few dreams, for each start step.

A controller plays ``--dreams`` dreams of RUN_DIR's M (tau 1.0) from each ``--starts``
step of the stored episodes, and the script writes one picture: a panel per start, a row
per dream, V's decoded frames at the dream's steps 0, 10, 25, 50, 100, 150, 200 and 300
after its start (docs/carracing_dream_start.jpg: from the first frames, zoomed out, most
dreams lose the road; from step 50 they keep it).

    python analysis/carracing_dream_frames.py RUN_DIR CKPT OUT.jpg [--starts 0 50]
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np
import torch

from worldmodels.artifacts import load_vae
from worldmodels.controller import Controller
from worldmodels.dream import Dream
from worldmodels.vae import to_frames

STEPS = (0, 10, 25, 50, 100, 150, 200, 300)


@torch.no_grad()
def panel(dream: Dream, vae, controller: Controller, w: torch.Tensor, n: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    state = dream.reset(n, generator)
    act = controller.dream_policy(w[None], torch.zeros(n, dtype=torch.long))
    zs = [state.z]
    for _ in range(max(STEPS)):  # (a dream whose done head fires is drawn on)
        state, *_ = dream.step(state, act(dream.observe(state), torch.arange(n)), generator)
        zs.append(state.z)
    rows = []
    for i in range(n):
        frames = to_frames(vae.decode(torch.stack([zs[s][i] for s in STEPS])))
        rows.append(np.concatenate([np.pad(f, ((1, 1), (1, 1), (0, 0)), constant_values=255)
                                    for f in frames], 1))  # fmt: skip
    return np.concatenate(rows, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("ckpt", help="a controller checkpoint (controller/best.pt)")
    parser.add_argument("out", help="the picture to write (.jpg or .png)")
    parser.add_argument("--starts", type=int, nargs="+", default=[0, 50])
    parser.add_argument("--dreams", type=int, default=4)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    vae = load_vae(args.run_dir)
    ckpt = torch.load(args.ckpt, map_location="cpu", weights_only=True)
    controller, w = Controller(**ckpt["controller"]), ckpt["params"].float()
    panels = []
    for start in args.starts:
        dream = Dream.from_run_dir(args.run_dir, start=start, temperature=1.0)
        panels.append(panel(dream, vae, controller, w, args.dreams, args.seed))
        panels.append(np.full((12, panels[-1].shape[1], 3), 255, np.uint8))
    picture = cv2.cvtColor(np.concatenate(panels[:-1], 0), cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(args.out, picture, [cv2.IMWRITE_JPEG_QUALITY, 85]):
        raise SystemExit(f"cannot write {args.out} (give a .jpg or .png path)")


if __name__ == "__main__":
    main()
