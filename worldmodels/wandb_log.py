"""Weights & Biases logging, imported only when ``logging.wandb=true``.

One wandb run per experiment (its id kept in <run_dir>/wandb_id so a resumed experiment
continues it); after each stage, the new lines of metrics.jsonl (already stage-prefixed,
e.g. ``vae/train/loss``) and the stage's pictures, video and score table. WANDB_MODE
(e.g. ``offline``) is respected; nothing here opens a connection by itself.
"""

from __future__ import annotations

import json
import uuid

import wandb

from worldmodels.config import Config, to_dict
from worldmodels.files import atomic_path

MEDIA = {"vae": ["vae/reconstructions.png"], "controller": ["controller/history.png"],
         "evaluate": ["evaluate/episode.mp4"]}  # fmt: skip


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
            dir=str(self.run_dir), config=to_dict(config),
        )  # fmt: skip
        self.logged_lines = 0

    def log_stage(self, stage: str) -> None:
        metrics = self.run_dir / "metrics.jsonl"
        lines = metrics.read_text().splitlines() if metrics.exists() else []
        for line in lines[self.logged_lines :]:
            record = json.loads(line)
            step = record.pop("step", None)
            record.pop("time", None)
            self.run.log({**record, f"{stage}/step": step})
        self.logged_lines = len(lines)
        for name in MEDIA.get(stage, []):
            path = self.run_dir / name
            if path.exists():
                media = wandb.Video(str(path)) if name.endswith(".mp4") else wandb.Image(str(path))
                self.run.log({f"{stage}/{path.stem}": media})
        results = self.run_dir / "evaluate" / "results.json"
        if stage == "evaluate" and results.exists():
            r = json.loads(results.read_text())
            table = wandb.Table(columns=["policy", "mean", "std"], data=[
                ["controller, real game", r["real"]["mean"], r["real"]["std"]],
                ["random policy, real game", r["random_policy"]["mean"], r["random_policy"]["std"]],
                ["controller, dream", r["dream"]["mean"], None]])  # fmt: skip
            self.run.log({"evaluate/scores": table})

    def finish(self) -> None:
        self.run.finish()
