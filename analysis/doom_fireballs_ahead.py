"""Does V's z show where the fireballs are, and does M foresee where they will be?

A linear probe (ridge regression, fitted on training episodes' frames) reads two things
off V's z (drawn from V's posterior, as M learns and dreams it): whether a close
fireball is on screen (50 or more fireball pixels, ``DoomTakeCover.fireballs``; the
threshold that best balances the two kinds of error on the training frames) and, when
one is, its column (0-63, the mean column of its pixels). On the held-out episodes the
probe is scored on the real z, and then on M's dreams: at each step t where a close
fireball is on screen k steps later, M reads the real z and actions up to t and dreams
the next k steps with the recorded actions (``--samples`` dreams each, at
``--temperature``); the probe reads the dreamt z_(t+k).
A dream that knows how a fireball moves as the player does puts it in the right column;
the baselines are the probe on the real z_(t+k) (what V allows), on the real z_t where
a close fireball is on screen at t too (a dream that kept the fireball where it was) and
the training frames' mean column.

    python analysis/doom_fireballs_ahead.py RUN_DIR [--ahead 1 5 10 20] [--samples 4]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from worldmodels.artifacts import load_latents
from worldmodels.dream import Dream, DreamState
from worldmodels.envs import DoomTakeCover
from worldmodels.rollouts import episode_path, read_episode, split_held_out
from worldmodels.train import load_checkpoint

CLOSE = 50  # fireball pixels of a close fireball


def fireball_columns(frames: np.ndarray) -> np.ndarray:
    """Per frame: the mean column of its fireball pixels if there are CLOSE or more, else nan."""
    mask = DoomTakeCover.fireballs(frames)
    count = mask.sum((1, 2))
    column = (mask.sum(1) * np.arange(mask.shape[2])).sum(1) / np.maximum(count, 1)
    return np.where(count >= CLOSE, column, np.nan)


def ridge(x: np.ndarray, y: np.ndarray, lam: float = 1.0) -> np.ndarray:
    """Weights w of y ~ [x, 1] w."""
    x = np.c_[x, np.ones(len(x))]
    return np.linalg.solve(x.T @ x + lam * np.eye(x.shape[1]), x.T @ y)


def apply(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.c_[x, np.ones(len(x))] @ w


@torch.no_grad()
def teacher_forced(dream: Dream, episodes: list[dict]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per episode, M's LSTM (h, c) ``[T, H]`` before each step t: after reading the real z
    and actions of steps 0..t-1 (zeros at t = 0)."""
    n, longest = len(episodes), max(len(e["mu"]) for e in episodes)
    hidden = dream.mdnrnn.hidden_size
    h, c = torch.zeros(n, hidden), torch.zeros(n, hidden)
    hs, cs = np.zeros((n, longest, hidden), np.float32), np.zeros((n, longest, hidden), np.float32)
    for t in range(longest):
        hs[:, t], cs[:, t] = h.numpy(), c.numpy()
        z = torch.from_numpy(
            np.stack([e["mu"][min(t, len(e["mu"]) - 1)] for e in episodes]).astype(np.float32)
        )
        a = np.stack([e["action"][min(t, len(e["action"]) - 1)] for e in episodes])
        state = DreamState(z, h, c, torch.full((n,), t))
        state = dream.step(state, torch.from_numpy(a.astype(np.float32)))[0]
        h, c = state.h, state.c
    return [(hs[i, : len(e["mu"])], cs[i, : len(e["mu"])]) for i, e in enumerate(episodes)]


@torch.no_grad()
def dream_ahead(dream: Dream, episodes, states, points, k: int, samples: int, seed: int):
    """Dreamt z_(t+k) ``[len(points) * samples, Z]`` from each (episode, t) of ``points``."""
    gen = torch.Generator().manual_seed(seed)
    pick = [p for p in points for _ in range(samples)]
    z = torch.from_numpy(np.stack([episodes[e]["mu"][t] for e, t in pick]).astype(np.float32))
    h = torch.from_numpy(np.stack([states[e][0][t] for e, t in pick]))
    c = torch.from_numpy(np.stack([states[e][1][t] for e, t in pick]))
    state = DreamState(z, h, c, torch.tensor([t for _, t in pick]))
    for j in range(k):
        a = np.stack([episodes[e]["action"][t + j] for e, t in pick]).astype(np.float32)
        state = dream.step(state, torch.from_numpy(a), gen)[0]
    return state.z.numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a DoomTakeCover run directory with latents and M")
    parser.add_argument("--ahead", type=int, nargs="+", default=[1, 5, 10, 20])
    parser.add_argument("--samples", type=int, default=4, help="dreams per start")
    parser.add_argument("--temperature", type=float, default=1.15)
    parser.add_argument("--train-every", type=int, default=3,
                        help="fit the probe on every n-th training episode")  # fmt: skip
    args = parser.parse_args()
    if min(args.ahead) < 1:
        parser.error(f"--ahead must be >= 1, got {args.ahead}")
    torch.set_num_threads(2)
    latents, _ = load_latents(args.run_dir, keys=("mu", "logvar", "action"))
    rng = np.random.default_rng(0)
    for e in latents:  # z drawn from V's posterior, once per frame
        noise = rng.standard_normal(e["mu"].shape, dtype=np.float32)
        e["z"] = e["mu"].astype(np.float32) + np.exp(e["logvar"] / 2) * noise
    val_every = load_checkpoint(f"{args.run_dir}/mdnrnn/ckpt.pt", "MDNRNN")["config"]["val_every"]
    train, test = split_held_out(latents, val_every)  # M was not trained on test
    train = [e for e in train if e["index"] % args.train_every == 0]
    for e in train + test:  # only these episodes' frames are read
        obs = read_episode(episode_path(f"{args.run_dir}/rollouts", e["index"]))["obs"]
        e["column"] = fireball_columns(obs)
    z = np.concatenate([e["z"] for e in train])
    column = np.concatenate([e["column"] for e in train])
    close = ~np.isnan(column)
    w_close = ridge(z, close.astype(np.float64))
    fit = apply(w_close, z)
    threshold = max(np.linspace(0.02, 0.5, 25),
                    key=lambda c: np.mean(fit[close] > c) + np.mean(fit[~close] <= c))  # fmt: skip
    w_column = ridge(z[close], column[close])
    mean_column = column[close].mean()

    z_test = np.concatenate([e["z"] for e in test])
    col_test = np.concatenate([e["column"] for e in test])
    on = ~np.isnan(col_test)
    found = apply(w_close, z_test) > threshold
    print(f"probe on V's z, {len(test)} held-out episodes: a close fireball found in "
          f"{found[on].mean():.3f} of the frames that show one, wrongly in "
          f"{found[~on].mean():.3f} of the others; its column off by "
          f"{np.abs(apply(w_column, z_test[on]) - col_test[on]).mean():.1f} on average "
          f"(columns vary by {col_test[on].std():.1f})")  # fmt: skip

    # the same probe fitted on V's mean z, which C reads in the game
    mu, mu_test = (np.concatenate([e["mu"] for e in es]) for es in (train, test))
    w_mean = ridge(mu[close], column[close])
    off_mean = np.abs(apply(w_mean, mu_test[on]) - col_test[on])
    print(f"on V's mean z (what C reads in the game): its column off by {off_mean.mean():.1f}")

    dream = Dream.from_run_dir(args.run_dir, temperature=args.temperature)
    states = teacher_forced(dream, test)
    print(f"\nM dreams k steps from the real state at t, recorded actions, tau "
          f"{args.temperature}, {args.samples} dreams per start; frames with a close fireball "
          f"at t + k:\n\n| k | starts | close fireball in the dream at t + k | column off "
          f"by: dream (where one is at t) | V's z at t + k | V's z at t, where one is | "
          f"mean column |\n"
          "|---|---|---|---|---|---|---|")  # fmt: skip
    per_move = []
    for k in args.ahead:
        points = [(i, t) for i, e in enumerate(test) for t in range(len(e["mu"]) - k)
                  if not np.isnan(e["column"][t + k])]  # fmt: skip
        truth = np.array([test[i]["column"][t + k] for i, t in points])
        dreamt = dream_ahead(dream, test, states, points, k, args.samples, seed=k)
        shown = apply(w_close, dreamt) > threshold
        off = np.abs(apply(w_column, dreamt) - np.repeat(truth, args.samples))
        real_z = np.stack([test[i]["z"][t + k] for i, t in points])
        real = np.abs(apply(w_column, real_z) - truth)
        has = np.array([not np.isnan(test[i]["column"][t]) for i, t in points])
        before = apply(w_column, np.stack([test[i]["z"][t] for i, t in points]))
        persist, constant = np.abs(before[has] - truth[has]).mean(), np.abs(mean_column - truth)
        both = shown & np.repeat(has, args.samples)  # the starts that show a fireball at t
        print(f"| {k} | {len(points)} | {shown.mean():.2f} | {off[shown].mean():.1f} "
              f"({off[both].mean():.1f}) | {real.mean():.1f} | {persist:.1f} "
              f"({has.mean():.2f} of starts) | {constant.mean():.1f} |")  # fmt: skip
        moves = np.array([DoomTakeCover.move(test[i]["action"][t : t + k, 0]).sum()
                          for i, t in points])  # fmt: skip
        for label, where in [("moved one way most of the k steps", np.abs(moves) >= k / 2),
                             ("did not", np.abs(moves) < k / 2)]:  # fmt: skip
            sel = has & where
            if k > 1 and sel.any():
                picked = both & np.repeat(where, args.samples)
                per_move.append(f"| {k} | {label} | {sel.sum()} | {off[picked].mean():.1f} | "
                                f"{np.abs(before[sel] - truth[sel]).mean():.1f} |")  # fmt: skip
    if per_move:
        print(
            "\nStarts with a close fireball at t, by the player's recorded moves over the k "
            "steps: column off by\n\n| k | the player | starts | dream | kept where it was "
            "|\n|---|---|---|---|---|\n" + "\n".join(per_move)
        )


if __name__ == "__main__":
    main()
