"""V: the convolutional VAE of World Models (Ha & Schmidhuber, 2018, Sec. 2.1, Appendix A.1).

Encoder: four stride-2 4x4 convolutions (32, 64, 128, 256 filters, ReLU, no padding:
64 -> 31 -> 14 -> 6 -> 2), flattened to 1024, then dense layers to mu and log-variance
of z. Decoder: dense to 1024, reshaped to 1x1x1024, four stride-2 transposed
convolutions (128 k5, 64 k5, 32 k6, 3 k6; ReLU, sigmoid at the end) back to 64x64x3.
4,348,547 parameters for z=32 (CarRacing), 4,446,915 for z=64 (Doom), as the paper.

Loss per frame: summed squared pixel error plus the KL divergence to N(0, I), the KL
floored at ``kl_tolerance * z_size`` nats ("free bits"), both averaged over the batch.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class ConvVAE(nn.Module):
    """The World Models VAE. Frames are float ``[B, 3, 64, 64]`` in [0, 1].

    Args:
        z_size: Size of the latent z (32 for CarRacing, 64 for Doom in the paper).
        kl_tolerance: Free bits: the per-frame KL is floored at ``kl_tolerance * z_size``.
    """

    def __init__(self, z_size: int = 64, kl_tolerance: float = 0.5) -> None:
        super().__init__()
        self.z_size, self.kl_tolerance = z_size, kl_tolerance
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 32, 4, stride=2), nn.ReLU(),  # (B, 32, 31, 31)
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),  # (B, 64, 14, 14)
            nn.Conv2d(64, 128, 4, stride=2), nn.ReLU(),  # (B, 128, 6, 6)
            nn.Conv2d(128, 256, 4, stride=2), nn.ReLU(),  # (B, 256, 2, 2)
            nn.Flatten(),  # (B, 1024)
        )  # fmt: skip
        self.mu = nn.Linear(1024, z_size)
        self.logvar = nn.Linear(1024, z_size)
        self.decoder_in = nn.Linear(z_size, 1024)
        self.decoder = nn.Sequential(
            nn.Unflatten(1, (1024, 1, 1)),  # (B, 1024, 1, 1)
            nn.ConvTranspose2d(1024, 128, 5, stride=2), nn.ReLU(),  # (B, 128, 5, 5)
            nn.ConvTranspose2d(128, 64, 5, stride=2), nn.ReLU(),  # (B, 64, 13, 13)
            nn.ConvTranspose2d(64, 32, 6, stride=2), nn.ReLU(),  # (B, 32, 30, 30)
            nn.ConvTranspose2d(32, 3, 6, stride=2), nn.Sigmoid(),  # (B, 3, 64, 64)
        )  # fmt: skip

    @property
    def model_args(self) -> dict:
        """Everything needed to rebuild this model from a checkpoint."""
        return {"z_size": self.z_size, "kl_tolerance": self.kl_tolerance}

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames ``[B, 3, 64, 64]`` -> (mu, logvar), each ``[B, z]``."""
        h = self.encoder(x)
        return self.mu(h), self.logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents ``[B, z]`` -> frames ``[B, 3, 64, 64]`` in [0, 1]."""
        return self.decoder(self.decoder_in(z))  # no activation on the dense layer, as the original

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()  # reparameterisation
        return self.decode(z), mu, logvar

    def loss(self, frames: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """VAE loss of a batch of uint8 frames ``[B, 64, 64, 3]``; returns (loss, logs)."""
        x = to_input(frames)
        recon, mu, logvar = self(x)
        recon, mu, logvar = recon.float(), mu.float(), logvar.float()
        r_loss = (recon - x).square().sum(dim=(1, 2, 3)).mean()
        kl = -0.5 * (1 + logvar - mu.square() - logvar.exp()).sum(-1)  # (B,)
        kl_loss = kl.clamp_min(self.kl_tolerance * self.z_size).mean()
        loss = r_loss + kl_loss
        logs = {"loss": loss.item(), "r_loss": r_loss.item(), "kl_loss": kl_loss.item(),
                "kl": kl.mean().item()}  # fmt: skip
        return loss, logs


def to_input(frames: torch.Tensor) -> torch.Tensor:
    """uint8 frames ``[B, 64, 64, 3]`` -> float ``[B, 3, 64, 64]`` in [0, 1]."""
    return frames.permute(0, 3, 1, 2).float().div_(255.0)


def to_frames(x: torch.Tensor) -> np.ndarray:
    """V's output ``[B, 3, 64, 64]`` in [0, 1] -> uint8 frames ``[B, 64, 64, 3]`` (numpy),
    the inverse of ``to_input``."""
    return x.permute(0, 2, 3, 1).mul(255).round().byte().cpu().numpy()
