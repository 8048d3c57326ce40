"""Weights & Biases logging, imported only when ``logging.wandb=true``.

One wandb run per experiment (its id kept in <run_dir>/wandb_id so a resumed experiment
continues it); after each stage, the new lines of metrics.jsonl (already stage-prefixed,
e.g. ``vae/train/loss``), the stage's media (``Stage.media``) and the numbers of its
``<output>/results.json``, flattened (``evaluate/results/real/mean``). The WANDB_*
variables are respected: WANDB_MODE (e.g. ``offline``), and WANDB_DIR for where wandb
writes (the run directory when it is not set). Nothing here opens a connection by itself.
"""

from __future__ import annotations

import json
import os
import uuid

import wandb

from worldmodels.artifacts import read_results
from worldmodels.config import Config, to_dict
from worldmodels.files import atomic_path
from worldmodels.stages import Stage


class WandbLogger:
    def __init__(self, config: Config) -> None:
        self.run_dir = config.path
        id_file = self.run_dir / "wandb_id"
        if not id_file.exists():
            with atomic_path(id_file) as tmp:
                tmp.write_text(uuid.uuid4().hex[:8])
        run_id = id_file.read_text().strip()
        self.run = wandb.init(
            project=config.logging.project, name=config.name, id=run_id, resume="allow",
            dir=os.environ.get("WANDB_DIR") or str(self.run_dir), config=to_dict(config),
        )  # fmt: skip
        self.logged_lines = 0

    def log_stage(self, stage: Stage) -> None:
        metrics = self.run_dir / "metrics.jsonl"
        lines = metrics.read_text().splitlines() if metrics.exists() else []
        for line in lines[self.logged_lines :]:
            record = json.loads(line)
            step = record.pop("step", None)
            record.pop("time", None)
            self.run.log({**record, f"{stage.name}/step": step})
        self.logged_lines = len(lines)
        for name in stage.media:
            path = self.run_dir / name
            if path.exists():
                media = wandb.Video(str(path)) if name.endswith(".mp4") else wandb.Image(str(path))
                self.run.log({f"{stage.name}/{path.stem}": media})
        results = read_results(self.run_dir, stage.output)
        if results:
            self.run.summary.update(flatten(results, f"{stage.name}/results/"))

    def finish(self) -> None:
        self.run.finish()


def flatten(data: dict, prefix: str) -> dict[str, float]:
    """The numbers of nested ``data`` under slash-joined keys (lists and text left out)."""
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}/"))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[f"{prefix}{key}"] = value
    return out
