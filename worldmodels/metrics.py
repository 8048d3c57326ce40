"""metrics.jsonl: one JSON object per line, appended, in the run directory."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


class MetricsLog:
    """Append ``{"stage/split/name": value, ..., "step": n, "time": t}`` lines to a file."""

    def __init__(self, path: str | os.PathLike, stage: str):
        self.path, self.stage = Path(path), stage
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, metrics: dict[str, float], step: int, split: str = "train") -> None:
        record = {f"{self.stage}/{split}/{k}": v for k, v in metrics.items()}
        record.update(step=step, time=round(time.time(), 3))
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
