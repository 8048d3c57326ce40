"""mdn: mixture density networks for PyTorch.

A standalone library (it imports torch only): an MLP or a single head that outputs a
Gaussian mixture, its negative log-likelihood, and temperature-controlled sampling.

    >>> import torch
    >>> from mdn import MixtureDensityNetwork, mixture_density_loss, sample_gaussian_mixture
    >>> model = MixtureDensityNetwork(1, 1, 3)
    >>> params = model(torch.randn(5, 1))
    >>> loss = mixture_density_loss(torch.randn(5, 1), params)
    >>> sample_gaussian_mixture(params, temperature=0.5).shape
    torch.Size([5, 1])
"""

from mdn.model import MixtureDensityHead, MixtureDensityNetwork
from mdn.params import MixtureParams
from mdn.utils import mixture_density_loss, sample_gaussian_mixture

__all__ = [
    "MixtureDensityHead",
    "MixtureDensityNetwork",
    "MixtureParams",
    "mixture_density_loss",
    "sample_gaussian_mixture",
]
__version__ = "0.1.0"
