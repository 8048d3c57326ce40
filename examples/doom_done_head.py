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

    python examples/doom_done_head.py runs/doom_laptop

A second hit while the flash of the first is still on is not seen (counted as none).
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch

from worldmodels.artifacts import load_latents, load_mdnrnn, run_env
from worldmodels.envs import DoomTakeCover
from worldmodels.rollouts import episode_path, held_out, read_episode
from worldmodels.train import load_checkpoint

LEAD = 5  # steps before a hit at which the head's p(end) is shown


@torch.no_grad()
def end_probabilities(model, episode: dict, generator: torch.Generator) -> np.ndarray:
    """The done head's probability that the episode ends at each step (the weight undone),
    with z drawn from the stored mu / log-variance as in training."""
    mu, logvar = (torch.from_numpy(episode[k])[None] for k in ("mu", "logvar"))
    z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=generator)
    restart = torch.zeros(1, mu.shape[1], dtype=torch.bool)
    restart[0, 0] = True
    out, _ = model.states(z, torch.from_numpy(episode["action"])[None], restart)
    logit = model.done(out).squeeze(-1)[0] - math.log(model.done_pos_weight)
    return torch.sigmoid(logit).numpy()


def hits(run_dir: str, episode: dict) -> tuple[np.ndarray, bool]:
    """(landed, killed): whether a hit lands during each step (the next frame flashes, or
    the episode ends by death there), and whether the episode ended by death."""
    obs = read_episode(episode_path(f"{run_dir}/rollouts", episode["index"]))["obs"]
    on = DoomTakeCover.flashed(obs)
    onset = on[1:] & ~on[:-1]  # onset[t]: the frame after step t flashes anew
    killed = bool(episode["terminated"][-1])
    return np.append(onset, killed), killed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a DoomTakeCover run directory with latents and M")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not run_env(args.run_dir).get("screen_flashes"):
        raise SystemExit(f"{args.run_dir}: collected without the damage flash; hits are unseen")
    model = load_mdnrnn(args.run_dir)
    val_every = load_checkpoint(f"{args.run_dir}/mdnrnn/ckpt.pt", "MDNRNN")["config"]["val_every"]
    episodes, _ = load_latents(args.run_dir)
    episodes = [e for e in episodes if held_out(e["index"], val_every)]
    generator = torch.Generator().manual_seed(args.seed)
    landing = []  # (hits before, fatal, p) for every step during which a hit lands
    quiet, ends, lead = [], 0, [[] for _ in range(LEAD)]
    for episode in episodes:
        p = end_probabilities(model, episode, generator)
        landed, killed = hits(args.run_dir, episode)
        ends += killed
        for t in np.flatnonzero(landed):
            for k in range(1, min(LEAD, t + 1)):
                if not landed[t - k]:
                    lead[k].append(p[t - k])
        before = np.cumsum(landed) - landed
        fatal = np.zeros(len(p), bool)
        fatal[-1] = killed
        landing += zip(before[landed], fatal[landed], p[landed], strict=True)
        quiet += list(p[~landed])
    before, fatal, p = (np.array(x) for x in zip(*landing, strict=True))
    threshold = 1 / (1 + model.done_pos_weight)
    print(f"{len(episodes)} held-out episodes, {ends} ended by death; {len(landing)} hits landed")
    print("hits before | hits | fatal | head's mean p(end): at fatal / non-fatal hits")
    counting_fires = np.zeros(len(p), bool)
    for k in range(int(before.max()) + 1):
        at = before == k
        rate = fatal[at].mean()
        counting_fires[at] = rate > threshold
        on_fatal = p[at & fatal].mean() if (at & fatal).any() else float("nan")
        on_other = p[at & ~fatal].mean() if (at & ~fatal).any() else float("nan")
        print(f"{k:11d} | {at.sum():4d} | {rate:5.2f} | {on_fatal:.3f} / {on_other:.3f}")
    print(f"no hit lands: {len(quiet)} steps, head's mean p(end) {np.mean(quiet):.4f}; "
          "k steps before a hit lands: " + ", ".join(
              f"k={k} {np.mean(lead[k]):.3f}" for k in range(1, LEAD) if lead[k]))  # fmt: skip
    head_fires = p > threshold  # logit > 0
    found = (head_fires & fatal).sum()
    print(
        f"ends found at the step (logit > 0): trained head {found / ends:.2f} (at steps "
        f"where a hit lands; its false ends elsewhere are not counted here); a head that "
        f"knew when hits land and counted them: recall "
        f"{(counting_fires & fatal).sum() / ends:.2f}, precision "
        f"{(counting_fires & fatal).sum() / max(counting_fires.sum(), 1):.2f}"
    )


if __name__ == "__main__":
    main()
