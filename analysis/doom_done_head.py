"""How much could M's done head know? Its predictions at the hits of held-out Doom episodes.

With the damage flash shown (the default), every hit that does not kill shows in the
stored frames as the flash coming on, and the fatal hit as the episode's end. At each
step during which a hit lands (the next frame flashes, or the episode ends there) this
script prints, by the number of hits before it in the episode: how many such hits there
are, the fraction that killed, and the done head's mean probability of an end at the
fatal and the non-fatal ones; and the head's mean probability at steps where no hit
lands, and 1-4 steps before a hit lands (a head that sees hits coming but not exactly
when spreads its probability over those).

The fraction that killed is the most a head could know that knew exactly when hits land
and counted them (the damage of a hit is random): with positives weighted by w, such a
head fires (logit > 0) at a hit when that fraction is above 1 / (1 + w). Its recall
and precision are printed beside those of the trained head, so the two ways a head can
miss an end show apart: not seeing a hit coming, and not knowing how hurt the player is.
Beside them, a probe: a small MLP trained on the same ends that reads only V's latents
of the last frame(s), no memory; if it finds more ends than M's head, the information
was in z and M's state lost it.

    python analysis/doom_done_head.py runs/doom_laptop

A second hit while the flash of the first is still on is not seen (counted as none).
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch
from torch import nn

from worldmodels.artifacts import load_latents, load_mdnrnn, run_env
from worldmodels.envs import DoomTakeCover
from worldmodels.rollouts import episode_path, held_out, read_episode
from worldmodels.train import load_checkpoint

LEAD = 5  # steps before a hit at which the head's p(end) is shown


@torch.no_grad()
def end_logits(model, episode: dict, generator: torch.Generator) -> torch.Tensor:
    """The done head's logits at each step of a whole episode (positives weighted), with z
    drawn from the stored mu / log-variance as in training."""
    mu, logvar = (torch.from_numpy(episode[k])[None] for k in ("mu", "logvar"))
    z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=generator)
    restart = torch.zeros(1, mu.shape[1], dtype=torch.bool)
    restart[0, 0] = True
    out, _ = model.states(z, torch.from_numpy(episode["action"])[None], restart)
    return model.done(out).squeeze(-1)[0]


def hits(run_dir: str, episode: dict) -> np.ndarray:
    """Whether a hit lands during each step: the next frame flashes anew, or the episode
    ends there by death."""
    obs = read_episode(episode_path(f"{run_dir}/rollouts", episode["index"]))["obs"]
    on = DoomTakeCover.flashed(obs)
    return np.append(on[1:] & ~on[:-1], bool(episode["terminated"][-1]))


def steps_to_next(landed: np.ndarray) -> np.ndarray:
    """Steps from each step to the next one during which a hit lands (0 there; large
    after the episode's last hit)."""
    out, next_hit = np.empty(len(landed)), np.inf
    for t in range(len(landed) - 1, -1, -1):
        next_hit = t if landed[t] else next_hit
        out[t] = next_hit - t
    return out


def frame_probe(model, train: list[dict], val: list[dict], frames: int, steps: int = 3000):
    """Held-out logits of a small MLP that reads only V's latents (mu) of the last
    ``frames`` frames and the action, trained on the training episodes' ends with the
    done head's loss; the step kept is the one with the lowest held-out loss (checked
    every 100 steps, so slightly optimistic, as the refit's choice)."""

    def features(episodes):
        x = []
        for e in episodes:
            mu = torch.from_numpy(e["mu"])
            past = [torch.cat([mu[:1].expand(k, -1), mu[: len(mu) - k]]) for k in range(frames)]
            x.append(torch.cat([*past, torch.from_numpy(e["action"])], 1))
        y = [torch.from_numpy(e["terminated"]).float() for e in episodes]
        return torch.cat(x), torch.cat(y)

    (x, y), (x_val, y_val) = features(train), features(val)
    mean, std = x.mean(0), x.std(0) + 1e-6
    x, x_val = (x - mean) / std, (x_val - mean) / std
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(x.shape[1], 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                        nn.Linear(256, 1))  # fmt: skip
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    best = (math.inf, None)
    for step in range(1, steps + 1):
        pick = torch.randint(len(x), (4096,))
        loss = model.done_loss(net(x[pick]).squeeze(-1), y[pick])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0:
            with torch.no_grad():
                logits = net(x_val).squeeze(-1)
            best = min(best, (model.done_loss(logits, y_val).item(), logits), key=lambda b: b[0])
    return best[1]


def scores(model, logits: torch.Tensor, ends: np.ndarray) -> str:
    fires, ends = logits > 0, torch.from_numpy(ends)
    found = (fires & ends).sum().item()
    return (
        f"done loss {model.done_loss(logits, ends.float()).item():.4f}, precision "
        f"{found / max(fires.sum().item(), 1):.2f}, recall {found / ends.sum().item():.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a DoomTakeCover run directory with latents and M")
    parser.add_argument("--probe-frames", type=int, default=1,
                        help="frames the latent probe reads (0: no probe)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not run_env(args.run_dir).get("screen_flashes"):
        raise SystemExit(f"{args.run_dir}: collected without the damage flash; hits are unseen")
    model = load_mdnrnn(args.run_dir)
    val_every = load_checkpoint(f"{args.run_dir}/mdnrnn/ckpt.pt", "MDNRNN")["config"]["val_every"]
    episodes, _ = load_latents(args.run_dir)
    val = [e for e in episodes if held_out(e["index"], val_every)]
    generator = torch.Generator().manual_seed(args.seed)
    logits = torch.cat([end_logits(model, e, generator) for e in val])
    ends = np.concatenate([e["terminated"] for e in val]).astype(bool)
    landed = [hits(args.run_dir, e) for e in val]
    before = np.concatenate([np.cumsum(h) - h for h in landed])  # hits earlier in the episode
    to_hit = np.concatenate([steps_to_next(h) for h in landed])
    landed = np.concatenate(landed)
    p = torch.sigmoid(logits - math.log(model.done_pos_weight)).numpy()
    threshold = 1 / (1 + model.done_pos_weight)  # p above it: logit > 0
    print(f"{len(val)} held-out episodes, {ends.sum()} ended by death; {landed.sum()} hits landed")
    print("hits before | hits | fatal | head's mean p(end): at fatal / non-fatal hits")
    counting_fires = np.zeros(len(p), bool)
    for k in range(int(before[landed].max()) + 1):
        at = landed & (before == k)
        rate = ends[at].mean()
        counting_fires[at] = rate > threshold
        on_fatal = p[at & ends].mean() if (at & ends).any() else float("nan")
        on_other = p[at & ~ends].mean() if (at & ~ends).any() else float("nan")
        print(f"{k:11d} | {at.sum():4d} | {rate:5.2f} | {on_fatal:.3f} / {on_other:.3f}")
    print(f"no hit lands: {(~landed).sum()} steps, head's mean p(end) {p[~landed].mean():.4f}; "
          "k steps before a hit lands: " + ", ".join(
              f"k={k} {p[to_hit == k].mean():.3f}" for k in range(1, LEAD)))  # fmt: skip
    print(f"M's done head (logit > 0): {scores(model, logits, ends)}")
    if args.probe_frames:
        train = [e for e in episodes if not held_out(e["index"], val_every)]
        probe = frame_probe(model, train, val, args.probe_frames)
        print(f"a probe reading V's latents of the last {args.probe_frames} frame(s) and the "
              f"action: {scores(model, probe, ends)}")  # fmt: skip
    found = (counting_fires & ends).sum()
    precision = found / max(counting_fires.sum(), 1)
    print(f"a head that knew when hits land and counted them: precision {precision:.2f}, "
          f"recall {found / ends.sum():.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
