"""The parameters of a Gaussian mixture, and what can be read off them.

A mixture density network (Bishop, 1994) outputs, for every input position, the
parameters of a Gaussian mixture over the target vector y of size D. Two layouts:

- ``per_dim`` (World Models, Ha & Schmidhuber 2018, Sec. 2.2): every output dimension
  is its own one-dimensional mixture of K Gaussians; ``log_pi`` is ``[..., D, K]``.
- ``shared``: one set of K weights for the whole vector, with diagonal Gaussians;
  ``log_pi`` is ``[..., K]``.

In both, ``mu`` and ``sigma`` are ``[..., D, K]``. The layout is read off the shapes.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import distributions as td


class MixtureParams(NamedTuple):
    """Gaussian mixture parameters.

    Attributes:
        log_pi: Normalised log mixture weights, ``[..., D, K]`` (per_dim) or ``[..., K]``
            (shared); ``log_pi.exp().sum(-1) == 1``.
        mu: Component means, ``[..., D, K]``.
        sigma: Component standard deviations, ``[..., D, K]``, strictly positive.
    """

    log_pi: torch.Tensor
    mu: torch.Tensor
    sigma: torch.Tensor

    @property
    def mixture(self) -> str:
        """``"per_dim"`` or ``"shared"``, read off the shape of ``log_pi``."""
        return "per_dim" if self.log_pi.dim() == self.mu.dim() else "shared"

    @property
    def dim_out(self) -> int:
        return self.mu.shape[-2]

    @property
    def n_components(self) -> int:
        return self.mu.shape[-1]

    @property
    def batch_shape(self) -> torch.Size:
        """The leading (position) dims, ``[...]``."""
        return self.mu.shape[:-2]

    def _pi(self) -> torch.Tensor:
        """Mixture weights broadcastable against ``mu``: ``[..., D or 1, K]``."""
        log_pi = self.log_pi if self.mixture == "per_dim" else self.log_pi.unsqueeze(-2)
        return log_pi.exp()

    def mean(self) -> torch.Tensor:
        """Mean of the mixture, ``[..., D]``."""
        return (self._pi() * self.mu).sum(-1)

    def variance(self) -> torch.Tensor:
        """Per-dimension variance of the mixture (law of total variance), ``[..., D]``."""
        pi = self._pi()
        mean = (pi * self.mu).sum(-1, keepdim=True)
        return (pi * (self.sigma.square() + (self.mu - mean).square())).sum(-1)

    def mode(self) -> torch.Tensor:
        """Mean of the most likely component, ``[..., D]``.

        For per_dim the most likely component is chosen per dimension; for shared one
        component is chosen for the whole vector.
        """
        k = self.log_pi.argmax(-1, keepdim=True)  # (..., D, 1) or (..., 1)
        if self.mixture == "shared":
            k = k.unsqueeze(-2).expand(*self.mu.shape[:-1], 1)  # (..., D, 1)
        return self.mu.gather(-1, k).squeeze(-1)

    def distribution(self, temperature: float = 1.0) -> td.Distribution:
        """The equivalent ``torch.distributions`` object over y ``[..., D]``.

        Args:
            temperature: tau as in World Models: the mixture logits are divided by tau
                and the standard deviations multiplied by sqrt(tau).

        Returns:
            A distribution with ``batch_shape == [...]`` and ``event_shape == [D]``.
        """
        tau = check_temperature(temperature)
        logits = self.log_pi / tau
        sigma = self.sigma * math.sqrt(tau)
        if self.mixture == "per_dim":
            mixture = td.MixtureSameFamily(td.Categorical(logits=logits), td.Normal(self.mu, sigma))
            return td.Independent(mixture, 1)
        # Components become the batch dim before the event dim: (..., K, D).
        normal = td.Independent(td.Normal(self.mu.transpose(-1, -2), sigma.transpose(-1, -2)), 1)
        return td.MixtureSameFamily(td.Categorical(logits=logits), normal)


def check_temperature(temperature: float) -> float:
    """Return ``temperature`` as a float, or raise ValueError unless it is > 0."""
    tau = float(temperature)
    if not tau > 0 or math.isinf(tau):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    return tau


def check_params(params: MixtureParams) -> None:
    """Raise ValueError unless the three tensors have consistent shapes."""
    log_pi, mu, sigma = params
    if mu.dim() < 2 or mu.shape != sigma.shape:
        raise ValueError(
            f"mu and sigma must both be [..., D, K]; got mu {tuple(mu.shape)}, "
            f"sigma {tuple(sigma.shape)}"
        )
    per_dim, shared = mu.shape, mu.shape[:-2] + mu.shape[-1:]
    if log_pi.shape not in (per_dim, shared):
        raise ValueError(
            f"log_pi must be {tuple(per_dim)} (per_dim) or {tuple(shared)} (shared) to match "
            f"mu {tuple(mu.shape)}; got {tuple(log_pi.shape)}"
        )
