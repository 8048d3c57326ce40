"""Command line: ``python -m worldmodels {run, STAGE, report} ...`` (also ``worldmodels``).

    python -m worldmodels run [EXPERIMENT.yaml] [key.sub=value ...] [--force]
    python -m worldmodels vae experiments/smoke.yaml vae.epochs=2 --force
    python -m worldmodels report runs/doom_takecover

With no experiment, ``run`` and the stages use experiments/doom_laptop.yaml: DoomTakeCover
at a scale that finishes on a 2-core laptop CPU. Errors are one line; nothing written is lost.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from worldmodels.config import STAGES

DEFAULT_EXPERIMENT = Path(__file__).resolve().parents[1] / "experiments" / "doom_laptop.yaml"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="worldmodels",
        description="World Models (Ha & Schmidhuber, 2018): run an experiment's stages "
        f"in order ({' -> '.join(STAGES)}), one stage, or report on a run directory.",
    )
    parser.add_argument(
        "command",
        choices=["run", *STAGES, "report"],
        help="run: every stage; a stage name: that stage; report: summary",
    )
    parser.add_argument(
        "args", nargs="*", help="[EXPERIMENT.yaml] [key.sub=value ...]; for report: RUN_DIR"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="remake the stage(s) even if done or made with other settings",
    )
    return parser.parse_args(argv)


def experiment_config(args: list[str]):
    """The config of ``[EXPERIMENT.yaml] [key.sub=value ...]`` (default: doom_laptop)."""
    from worldmodels.config import load_config

    yaml_path = next((a for a in args if "=" not in a), str(DEFAULT_EXPERIMENT))
    return load_config(yaml_path, [a for a in args if "=" in a])


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        from worldmodels import pipeline

        if args.command == "report":
            if len(args.args) != 1:
                raise ValueError("report takes one argument: the run directory")
            print(pipeline.report(args.args[0]))
            return 0
        config = experiment_config(args.args)
        stages = STAGES if args.command == "run" else (args.command,)
        pipeline.run(config, stages, force=args.force)
        print(pipeline.report(config.path))
    except (ValueError, FileNotFoundError, RuntimeError, FloatingPointError, OSError) as e:
        print(f"worldmodels: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
