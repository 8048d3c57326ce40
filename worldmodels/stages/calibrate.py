"""Stage ``calibrate``: is the dream calibrated? Blind policies in the dream and in the game.

Reads mdnrnn/ckpt.pt, latents/ (the dreams' first frames) and rollouts/meta.json (the
game and its settings). Writes calibration/results.json: the mean and std of the episode
length and return of each fixed policy (``worldmodels.calibrate``: no-op and random by
default) over ``episodes`` real episodes and as many dreams. Nothing downstream reads it,
so changing these settings reruns this stage only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from worldmodels.artifacts import read_results, run_env, run_game
from worldmodels.calibrate import calibrate, report, survival
from worldmodels.dream import Dream
from worldmodels.files import write_json


@dataclass
class CalibrateConfig:
    """Settings of the calibration (blind policies in the dream and the real game)."""

    limits: ClassVar[dict[str, str]] = {
        "episodes": ">= 0", "temperature": "> 0", "done": "logit sample", "workers": ">= 0",
    }  # fmt: skip
    """Allowed values, checked before any stage runs (see ``config.check_limits``)."""

    episodes: int = 100
    """Real episodes, and dreams, per policy (0: skip the stage)."""
    temperature: float = 1.15
    """tau of the dreams."""
    done: str = "logit"
    """The dreams' done rule (``"logit"`` or ``"sample"``); the other is scored too."""
    seed: int = 0
    """Seeds of the real episodes and the dreams."""
    workers: int | None = None
    """Workers playing the real episodes (``runtime.backend``): None means one per core
    (or the Ray cluster's CPUs), 0 plays in this process."""


def run_calibration(config: CalibrateConfig, run_dir: str | os.PathLike) -> dict:
    """Write calibration/results.json and print its table; return it."""
    run_dir = Path(run_dir)
    if not config.episodes:
        write_json(run_dir / "calibration" / "results.json", {"episodes": 0})
        return {"episodes": 0}
    dream = Dream.from_run_dir(run_dir, temperature=config.temperature, done=config.done)
    result = calibrate(dream, run_game(run_dir), config.episodes, config.seed, run_env(run_dir),
                       workers=config.workers)  # fmt: skip
    write_json(run_dir / "calibration" / "results.json", result)
    print(report(result))
    return result


def adopt_earlier_layout(config: CalibrateConfig, run_dir: Path, status: dict) -> bool:
    """Run directories made before calibration was a stage kept it in
    mdnrnn/calibration.json, made by M's stage with ``mdnrnn.calibration_episodes`` and
    ``calibration_temperature`` at M's seed, done by logit. If those were these settings,
    copy the file into place (True); else the stage has to run (False)."""
    old = run_dir / "mdnrnn" / "calibration.json"
    recorded = status.get("mdnrnn", {}).get("settings", {}).get("mdnrnn", {})
    if not old.exists() or "calibration_episodes" not in recorded:
        return False
    made_with = CalibrateConfig(
        episodes=recorded["calibration_episodes"],
        temperature=recorded.get("calibration_temperature", 1.15),
        done="logit",
        seed=recorded.get("seed", 0),
        workers=config.workers,
    )
    if made_with != config:
        return False
    write_json(run_dir / "calibration" / "results.json", json.loads(old.read_text()))
    return True


def summary(run_dir: Path) -> list[str]:
    """The calibration as a Markdown table (empty if the stage has not run or was skipped)."""
    r = read_results(run_dir, "calibration")
    if not r.get("episodes"):
        return []
    lengths_only = survival(r)
    measure = "length" if lengths_only else "return"  # what the controller is scored by
    lines = ["## Calibration", "",
             f"Mean episode {measure} of blind policies, {r['episodes']} episodes each; the "
             f"dream at tau {r['temperature']}, done by {r['done']}.", ""]  # fmt: skip
    if lengths_only:
        lines += ["| policy | real game | dream | dream / real |", "|---|---|---|---|"]
    else:
        lines += ["| policy | real game | dream | real length | dream length |",
                  "|---|---|---|---|---|"]  # fmt: skip
    for policy in r["policies"]:
        real, dream = r[policy][f"real_{measure}_mean"], r[policy][f"dream_{measure}_mean"]
        if lengths_only:
            lines.append(f"| {policy} | {real:.1f} | {dream:.1f} | {dream / real:.2f} |")
        else:
            lengths = r[policy]["real_length_mean"], r[policy]["dream_length_mean"]
            lines.append(f"| {policy} | {real:.1f} | {dream:.1f} | {lengths[0]:.0f} | "
                         f"{lengths[1]:.0f} |")  # fmt: skip
    return lines
