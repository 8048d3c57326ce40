"""Running the command line from tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / "experiments" / "smoke.yaml")


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the command line; afterwards kill whatever it left behind (a game whose worker
    died would otherwise hold the output pipe open for ever)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", "worldmodels", *args], cwd=ROOT,
                                stdout=out, stderr=err, env={**os.environ, **(env or {})},
                                text=True, start_new_session=True)  # fmt: skip
        try:
            proc.wait(timeout=900)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), err.read())
