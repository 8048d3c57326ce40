"""Command line: ``python -m worldmodels {run, STAGE, config, report} ...`` (also
``worldmodels``).

    python -m worldmodels run [EXPERIMENT.yaml] [key.sub=value ...] [--force]
    python -m worldmodels vae experiments/smoke.yaml vae.epochs=2 --force
    python -m worldmodels config [EXPERIMENT.yaml] [key.sub=value ...]
    python -m worldmodels report runs/doom_laptop
    python -m worldmodels evaluate --pretrained doom_takecover [evaluate.episodes=N ...]
    python -m worldmodels export RUN_DIR FOLDER

With no experiment, ``run``, ``config`` and the stages use experiments/doom_laptop.yaml:
DoomTakeCover at a scale that finishes on a 2-core laptop CPU. ``--help`` lists every
setting. Errors are one line; nothing written is lost.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_EXPERIMENT = Path(__file__).resolve().parents[1] / "experiments" / "doom_laptop.yaml"


def parse(argv: list[str]) -> argparse.Namespace:
    from worldmodels.config import settings_help
    from worldmodels.stages import NAMES, STAGES

    stages = "\n".join(f"  {s.name:10s} {s.about}" for s in STAGES)
    parser = argparse.ArgumentParser(
        prog="worldmodels",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="World Models (Ha & Schmidhuber, 2018): run an experiment's stages in "
        f"order, one stage, print the resolved config, or report on a run directory.\n\n"
        f"stages:\n{stages}",
        epilog="settings (key = default  [allowed]; set them in the experiment YAML or as "
        f"key.sub=value):\n\n{settings_help()}",
    )
    parser.add_argument(
        "command",
        choices=["run", *NAMES, "config", "report", "export"],
        help="run: every stage; a stage name: that stage; config: print the resolved "
        "config; report: a run directory's summary; export: a finished run's V, M and C "
        "as a pretrained folder (safetensors)",
    )
    parser.add_argument(
        "args",
        nargs="*",
        help="[EXPERIMENT.yaml] [key.sub=value ...]; for report: RUN_DIR; for export: "
        "RUN_DIR FOLDER",
    )
    parser.add_argument(
        "--pretrained",
        metavar="NAME",
        help="with evaluate: play a shipped agent (pretrained/NAME, or a folder holding "
        "agent.json) in the real game, no training; key.sub=value settings apply, the run "
        "directory is runs/pretrained/NAME unless run_dir= is given",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="remake the stage(s) even if done or made with other settings",
    )
    return parser.parse_intermixed_args(argv)


def experiment_config(args: list[str]):
    """The config of ``[EXPERIMENT.yaml] [key.sub=value ...]`` (default: doom_laptop)."""
    from worldmodels.config import load_config

    yaml_path = next((a for a in args if "=" not in a), str(DEFAULT_EXPERIMENT))
    return load_config(yaml_path, [a for a in args if "=" in a])


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        from worldmodels import pipeline
        from worldmodels.stages import NAMES

        if args.command == "report":
            if len(args.args) != 1:
                raise ValueError("report takes one argument: the run directory")
            print(pipeline.report(args.args[0]))
            return 0
        if args.command == "export":
            from worldmodels.pretrained import export

            if len(args.args) != 2:
                raise ValueError("export takes two arguments: the run directory and the folder")
            export(*args.args)
            print(f"exported {args.args[0]} to {args.args[1]}")
            return 0
        if args.pretrained is not None:
            return evaluate_pretrained(args)
        config = experiment_config(args.args)
        if args.command == "config":
            import yaml

            from worldmodels.config import to_dict

            print(yaml.safe_dump(to_dict(config), sort_keys=False), end="")
            return 0
        stages = NAMES if args.command == "run" else (args.command,)
        pipeline.run(config, stages, force=args.force)
        print(pipeline.report(config.path))
    except (ValueError, ImportError, RuntimeError, FloatingPointError, OSError) as e:
        print(f"worldmodels: error: {e}", file=sys.stderr)
        return 2
    return 0


def evaluate_pretrained(args: argparse.Namespace) -> int:
    """``evaluate --pretrained NAME [key.sub=value ...]``: unpack a shipped agent into a run
    directory and score it there with the evaluate stage (always played afresh)."""
    from worldmodels import pipeline
    from worldmodels.config import load_config
    from worldmodels.pretrained import find, unpack

    if args.command != "evaluate":
        raise ValueError(f"--pretrained works with evaluate, not {args.command}")
    if any("=" not in a for a in args.args):
        raise ValueError("with --pretrained give key.sub=value settings only: the agent "
                         "brings its own experiment")  # fmt: skip
    folder = find(args.pretrained)
    run_dir = f"run_dir=runs/pretrained/{folder.name}"
    config = load_config(str(folder / "experiment.yaml"), [run_dir, *args.args])
    unpack(folder, config.path)
    pipeline.run(config, ("evaluate",), force=True)
    print(pipeline.report(config.path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
