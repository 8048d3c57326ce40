"""Mixture density networks (Bishop, 1994) in PyTorch.

``MixtureDensityHead`` is one linear layer from features to mixture parameters, the
piece the MDN-RNN of World Models (Ha & Schmidhuber, 2018, Sec. 2.2) puts on its LSTM.
``MixtureDensityNetwork`` is an MLP trunk with that head, for plain regression.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from mdn.params import MixtureParams

MIXTURES = ("per_dim", "shared")


class MixtureDensityHead(nn.Module):
    """One linear layer that outputs a Gaussian mixture over a ``dim_out`` vector.

    Args:
        dim_in: Size of the input features.
        dim_out: Size D of the target vector.
        n_components: Number K of Gaussians.
        mixture: ``"per_dim"`` (each output dimension its own mixture, as World Models)
            or ``"shared"`` (one set of weights for the whole vector).
        min_sigma: Floor on every standard deviation: ``sigma = min_sigma + softplus(.)``.

    Shapes:
        input ``[..., dim_in]`` with any leading dims (e.g. an LSTM's ``[B, T, H]``);
        output a ``MixtureParams`` with ``mu``/``sigma`` ``[..., D, K]`` and ``log_pi``
        ``[..., D, K]`` (per_dim) or ``[..., K]`` (shared); float32 when the layers ran
        in half precision (bf16/fp16, e.g. under autocast), float64 for a float64 model.
    """

    def __init__(
        self,
        dim_in: int,
        dim_out: int,
        n_components: int,
        mixture: str = "per_dim",
        min_sigma: float = 1e-3,
    ) -> None:
        super().__init__()
        _check_sizes(dim_in=dim_in, dim_out=dim_out, n_components=n_components)
        if mixture not in MIXTURES:
            raise ValueError(f"mixture must be one of {MIXTURES}, got {mixture!r}")
        if not min_sigma > 0:
            raise ValueError(f"min_sigma must be > 0, got {min_sigma!r}")
        self.dim_out, self.n_components = dim_out, n_components
        self.mixture, self.min_sigma = mixture, min_sigma
        self.n_logits = dim_out * n_components if mixture == "per_dim" else n_components
        self.logits = nn.Linear(dim_in, self.n_logits)
        self.mu = nn.Linear(dim_in, dim_out * n_components)
        self.sigma = nn.Linear(dim_in, dim_out * n_components)
        self._init_near_uniform_unit_sigma()

    @torch.no_grad()
    def _init_near_uniform_unit_sigma(self) -> None:
        """Start with mixture weights near 1/K and sigma near 1, whatever the input."""
        for layer in (self.logits, self.sigma):
            layer.weight.mul_(0.01)
        self.logits.bias.zero_()
        # softplus(b) = 1 - min_sigma, so sigma = 1 at zero input.
        self.sigma.bias.fill_(math.log(math.expm1(max(1.0 - self.min_sigma, 1e-6))))

    def forward(self, x: torch.Tensor) -> MixtureParams:
        lead = x.shape[:-1]
        shape = (*lead, self.dim_out, self.n_components)
        logits = _lifted(self.logits(x))
        if self.mixture == "per_dim":
            logits = logits.view(shape)  # (..., D, K)
        log_pi = F.log_softmax(logits, dim=-1)
        mu = _lifted(self.mu(x)).view(shape)  # (..., D, K)
        sigma = self.min_sigma + F.softplus(_lifted(self.sigma(x)).view(shape))
        return MixtureParams(log_pi, mu, sigma)


def _lifted(x: torch.Tensor) -> torch.Tensor:
    """Half precision (bf16, fp16) lifted to float32: softmax and softplus of half-precision
    logits lose too much. float32 and float64 are kept as they are."""
    return x.float() if x.dtype in (torch.bfloat16, torch.float16) else x


class MixtureDensityNetwork(nn.Module):
    """An MLP trunk followed by a ``MixtureDensityHead``.

    Args:
        dim_in: Size of the input x.
        dim_out: Size D of the target y.
        n_components: Number K of Gaussians.
        hidden_dim: Width of each hidden layer.
        n_hidden: Number of hidden layers (0 makes it a bare head).
        activation: Factory of the nonlinearity between layers.
        mixture: ``"per_dim"`` or ``"shared"``, see ``MixtureDensityHead``.
        min_sigma: Floor on every standard deviation.

    Shapes:
        input ``[..., dim_in]``; output ``MixtureParams`` as ``MixtureDensityHead``.

    Example:
        >>> model = MixtureDensityNetwork(1, 1, 3)
        >>> params = model(torch.randn(5, 1))
        >>> params.mu.shape
        torch.Size([5, 1, 3])
    """

    def __init__(
        self,
        dim_in: int,
        dim_out: int,
        n_components: int,
        hidden_dim: int = 64,
        n_hidden: int = 2,
        activation: Callable[[], nn.Module] = nn.Tanh,
        mixture: str = "per_dim",
        min_sigma: float = 1e-3,
    ) -> None:
        super().__init__()
        _check_sizes(dim_in=dim_in, hidden_dim=hidden_dim)
        _check_sizes(minimum=0, n_hidden=n_hidden)
        layers: list[nn.Module] = []
        width = dim_in
        for _ in range(n_hidden):
            layers += [nn.Linear(width, hidden_dim), activation()]
            width = hidden_dim
        self.trunk = nn.Sequential(*layers)
        self.head = MixtureDensityHead(width, dim_out, n_components, mixture, min_sigma)

    def forward(self, x: torch.Tensor) -> MixtureParams:
        return self.head(self.trunk(x))


def _check_sizes(minimum: int = 1, **sizes: int) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
