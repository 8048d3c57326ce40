"""An ensemble of dream-trained controllers: does acting with their mean action help?

Each RUN_DIR holds a controller (``controller/best.pt``) evolved in the dream of the
same world model (V and M; checked), for example with different CMA-ES seeds. The
ensemble acts with the mean of its members' actions (after each one's squash: the game
reads the mean as it would read one controller's action), every ``repeat`` steps.
Printed: the ensemble's real-game mean over ``--episodes`` episodes on the evaluate
stage's seeds (``evaluate.seed`` 12345, so the members' own evaluations are comparable)
and its mean over ``--dreams`` dreams of the first run's M, drawn as the evaluate
stage draws them.

    python analysis/controller_ensemble.py RUN_DIR RUN_DIR ... [--episodes 100]
        [--temperature 1.15] [--repeat K] [--out ensemble.json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from worldmodels.agent import Agent, agent_work
from worldmodels.artifacts import load_mdnrnn, load_vae
from worldmodels.controller import Controller
from worldmodels.dream import Dream
from worldmodels.executor import executor
from worldmodels.stages.controller import (
    dream_generator,
    episode_seeds,
    load_controller,
    play_dreams,
)


class MeanController(Controller):
    """``members`` controllers of one shape acting together: their parameter vectors
    concatenated, their actions averaged."""

    def __init__(self, member: Controller, members: int) -> None:
        super().__init__(**member.spec)
        self.member, self.members = member, members
        self.n_params = members * member.n_params

    def _each(self, params: torch.Tensor) -> torch.Tensor:
        return params.reshape(*params.shape[:-1], self.members, self.member.n_params)

    def act(self, params: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        each = self._each(params)
        return torch.stack([self.member.act(p, obs) for p in each]).mean(0)

    def act_batched(self, params: torch.Tensor, which: torch.Tensor, obs: torch.Tensor):
        each = self._each(params)  # (P, members, n)
        return torch.stack([self.member.act_batched(each[:, i], which, obs)
                            for i in range(self.members)]).mean(0)  # fmt: skip


def load_members(run_dirs: list[str], repeat: int | None) -> tuple[Controller, np.ndarray]:
    """The members' shared shape (``repeat`` replacing theirs if given) and their
    parameters, concatenated; refuses members of other shapes or world models."""
    loaded = [load_controller(run) for run in run_dirs]
    spec = loaded[0][0].spec
    for run, (controller, _) in zip(run_dirs[1:], loaded[1:], strict=True):
        if controller.spec != spec:
            raise ValueError(f"{run}'s controller {controller.spec} is not {run_dirs[0]}'s "
                             f"{spec}: an ensemble's members must have one shape")  # fmt: skip
    first = {"V": load_vae(run_dirs[0]).state_dict(), "M": load_mdnrnn(run_dirs[0]).state_dict()}
    for run in run_dirs[1:]:
        for name, weights in (("V", load_vae(run).state_dict()),
                              ("M", load_mdnrnn(run).state_dict())):  # fmt: skip
            if any(not torch.equal(w, first[name][k]) for k, w in weights.items()):
                raise ValueError(f"{run}'s {name} is not {run_dirs[0]}'s: an ensemble's "
                                 "members must share one world model")  # fmt: skip
    member = Controller(**(spec | ({"repeat": repeat} if repeat else {})))
    return member, np.concatenate([params for _, params in loaded]).astype(np.float32)


def _play(agent: Agent, job: tuple) -> float:
    params, seed, members = job
    if not isinstance(agent.controller, MeanController):
        agent.controller = MeanController(agent.controller, members)
    return agent.play(params, seed)["return"]


def _name(job: tuple) -> str:
    return f"real-game episode of the ensemble (env seed {job[1]})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+")
    parser.add_argument("--episodes", type=int, default=100, help="real episodes")
    parser.add_argument("--dreams", type=int, default=1024)
    parser.add_argument("--temperature", type=float, default=1.15, help="the dreams' tau")
    parser.add_argument("--repeat", type=int, default=None,
                        help="C acts every REPEAT steps (default: the members' own)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=12345, help="as evaluate.seed")
    parser.add_argument("--workers", type=int, default=None, help="None: one per core")
    parser.add_argument("--out", help="also write the results to this JSON file")
    args = parser.parse_args()
    try:
        member, params = load_members(args.run_dirs, args.repeat)
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    members = len(args.run_dirs)
    seeds = episode_seeds(args.seed, 0, args.episodes)
    work = agent_work(args.run_dirs[0], member.spec, _play, _name)
    real = np.array(executor(args.workers).map(work, [(params, s, members) for s in seeds]))
    dream = Dream.from_run_dir(args.run_dirs[0], temperature=args.temperature)
    ensemble = MeanController(member, members)
    generator = dream_generator(dream, args.seed, 0)
    in_dream = float(play_dreams(dream, ensemble, params[None], args.dreams, generator)[0][0])
    print(f"ensemble of {members}, acting every {member.repeat} steps: real {real.mean():.1f} "
          f"+- {real.std():.1f} over {len(seeds)} episodes; dream {in_dream:.1f} over "
          f"{args.dreams} dreams at tau {args.temperature}")  # fmt: skip
    if args.out:
        results = {"members": args.run_dirs, "repeat": member.repeat, "dream": in_dream,
                   "real": {"mean": real.mean(), "std": real.std(), "scores": real.tolist()},
                   "seeds": seeds}  # fmt: skip
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
