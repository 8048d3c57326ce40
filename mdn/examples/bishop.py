"""Bishop's (1994) inverse problem: where a single Gaussian fails and a mixture does not.

The forward map x = y + 0.3 sin(2 pi y) + U(-0.1, 0.1), with y ~ U(0, 1), is a function;
its inverse, y given x, has up to three branches for the same x. A network that predicts
one Gaussian can only draw a line through their average; a mixture density network puts
a component on each branch. This script fits both (same trunk, K=5 against K=1), prints
their held-out negative log-likelihoods and writes a PNG of the data beside samples.

    python mdn/examples/bishop.py --out bishop.png
"""

from __future__ import annotations

import argparse
import math

import torch

from mdn import MixtureDensityNetwork, mixture_density_loss, sample_gaussian_mixture


def make_data(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (x, y), both ``[n, 1]``: y ~ U(0, 1), x = y + 0.3 sin(2 pi y) + U(-0.1, 0.1)."""
    y = torch.rand(n, 1, generator=generator)
    noise = torch.rand(n, 1, generator=generator) * 0.2 - 0.1
    x = y + 0.3 * torch.sin(2 * math.pi * y) + noise
    return x, y


def fit(
    model: MixtureDensityNetwork, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float = 3e-3
) -> MixtureDensityNetwork:
    """Full-batch Adam on the negative log-likelihood."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = mixture_density_loss(y, model(x), check_finite=False)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model


@torch.no_grad()
def heldout_nll(model: MixtureDensityNetwork, x: torch.Tensor, y: torch.Tensor) -> float:
    return mixture_density_loss(y, model(x)).item()


def run(n_train: int = 2000, steps: int = 2000, seed: int = 0) -> dict:
    """Fit an MDN (K=5) and a single Gaussian (K=1); return both models and their test NLL."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x, y = make_data(n_train, gen)
    x_test, y_test = make_data(n_train, gen)
    models = {"mdn": MixtureDensityNetwork(1, 1, 5), "gaussian": MixtureDensityNetwork(1, 1, 1)}
    result = {"data": (x, y)}
    for name, model in models.items():
        fit(model, x, y, steps)
        result[name] = model
        result[f"{name}_nll"] = heldout_nll(model, x_test, y_test)
    return result


@torch.no_grad()
def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, y = result["data"]
    grid = torch.linspace(x.min().item(), x.max().item(), 1000).unsqueeze(-1)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, name, title in (
        (axes[0], "gaussian", "single Gaussian (K=1)"),
        (axes[1], "mdn", "mixture density network (K=5)"),
    ):
        samples = sample_gaussian_mixture(
            result[name](grid), generator=torch.Generator().manual_seed(1)
        )
        ax.scatter(x, y, s=3, alpha=0.3, color="grey", label="data")
        ax.scatter(grid, samples, s=3, alpha=0.6, color="tab:red", label="samples")
        ax.set_title(f"{title}: held-out NLL {result[f'{name}_nll']:.3f} nats")
        ax.set_xlabel("x")
        ax.legend(loc="upper left")
    axes[0].set_ylabel("y")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bishop.png", help="where to write the PNG")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    result = run(steps=args.steps, seed=args.seed)
    print(f"held-out NLL, single Gaussian: {result['gaussian_nll']:.3f} nats")
    print(f"held-out NLL, MDN (K=5):       {result['mdn_nll']:.3f} nats")
    plot(result, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
