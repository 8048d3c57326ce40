"""M: the MDN-RNN of World Models (Ha & Schmidhuber, 2018, Sec. 2.2, Appendix A.2).

An LSTM reads [z_t, a_t] (plus, for Doom, a restart flag that is 1 at the first step of
an episode) and its hidden state predicts, through ``mdn.MixtureDensityHead`` (one
5-Gaussian mixture per latent dimension), the distribution of z_{t+1}; a done head
(Bernoulli logit, positives weighted x10 as the original) predicts that the episode
ends after this step; an optional reward head (regression) predicts the reward, which
the original lacked and which CarRacing needs to be trained in the dream. With
``dropout`` > 0 the heads see the hidden state through dropout, in training and in every
dream (a fresh mask per step: each dream step is predicted by another sub-network, which
makes a dream harder to exploit, as in Dropout's Dream Land, Wellmer & Kwok, 2021); the
LSTM's state, which the controller reads, is never dropped.

Doom-size model (LSTM 512, z 64, 1 action, restart flag, done head): 1,678,785
parameters as the paper, plus 2,048 for the second LSTM bias vector PyTorch keeps
(b_ih and b_hh; TensorFlow has one, and their sum is what matters).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mdn import MixtureDensityHead, mixture_density_loss


class MDNRNN(nn.Module):
    """LSTM + mixture density head over z_{t+1}, + done and reward heads.

    Args:
        z_size: Size of z.
        action_dim: Size of the action.
        hidden_size: LSTM units (256 CarRacing, 512 Doom in the paper).
        n_components: Gaussians per latent dimension.
        restart_flag: Add the restart flag to the input (Doom in the paper).
        predict_done: Have a done head.
        predict_reward: Have a reward head.
        done_pos_weight: Weight of positive (episode-ending) steps in the done loss.
        done_detached: Train the done head on the LSTM's states without letting the done
            loss train the LSTM (the original, and the default, train both jointly;
            docs/results.md compares the two).
        dropout: Chance that each hidden unit is zeroed on its way to the heads (0: none,
            the paper).
    """

    def __init__(
        self,
        z_size: int = 64,
        action_dim: int = 1,
        hidden_size: int = 512,
        n_components: int = 5,
        restart_flag: bool = True,
        predict_done: bool = True,
        predict_reward: bool = False,
        done_pos_weight: float = 10.0,
        done_detached: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.model_args = dict(
            z_size=z_size, action_dim=action_dim, hidden_size=hidden_size,
            n_components=n_components, restart_flag=restart_flag, predict_done=predict_done,
            predict_reward=predict_reward, done_pos_weight=done_pos_weight,
            done_detached=done_detached, dropout=dropout,
        )  # fmt: skip
        self.z_size, self.action_dim, self.hidden_size = z_size, action_dim, hidden_size
        self.restart_flag = restart_flag
        self.input_size = z_size + action_dim + int(restart_flag)
        self.lstm = nn.LSTM(self.input_size, hidden_size, batch_first=True)
        self.mdn = MixtureDensityHead(hidden_size, z_size, n_components)
        self.done = nn.Linear(hidden_size, 1) if predict_done else None
        self.reward = nn.Linear(hidden_size, 1) if predict_reward else None
        self.done_pos_weight, self.done_detached = done_pos_weight, done_detached
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.dropout = dropout

    def inputs(self, z, action, restart=None) -> torch.Tensor:
        """[z, a(, restart)] along the last dim."""
        parts = [z, action]
        if self.restart_flag:
            parts.append(restart.to(z.dtype).unsqueeze(-1))
        return torch.cat(parts, -1)

    def forward(self, z, action, restart=None, state=None):
        """Run over sequences.

        Args:
            z: ``[B, T, z_size]``; action: ``[B, T, action_dim]``; restart: ``[B, T]``.
            state: ``(h, c)``, each ``[1, B, hidden]``, or None for zeros.

        Returns:
            ``(params, done_logit, reward, state)``: mixture over z_{t+1} with ``mu``
            ``[B, T, z_size, K]``; done logits and rewards ``[B, T]`` (None without the
            head); the final LSTM state.
        """
        out, state = self.states(z, action, restart, state)
        return (*self.heads(out), state)

    def states(self, z, action, restart=None, state=None):
        """The LSTM's hidden states ``[B, T, H]`` over sequences, and its final ``(h, c)``
        (arguments as ``forward``). Inputs are cast to the LSTM's dtype, so a model cast
        to bfloat16 (the dream's bf16 mode) takes float32 z and actions."""
        x = self.inputs(z, action, restart).to(self.lstm.weight_ih_l0.dtype)
        return self.lstm(x, state)

    def heads(self, h: torch.Tensor):
        """Mixture params, done logit and reward predicted from hidden states ``[..., H]``
        (through dropout in training mode; a dream drops with its own masks, ``drop``)."""
        h = F.dropout(h, self.dropout, self.training) if self.dropout else h
        h_done = h.detach() if self.done_detached else h
        done = self.done(h_done).squeeze(-1) if self.done is not None else None
        reward = self.reward(h).squeeze(-1) if self.reward is not None else None
        return self.mdn(h), done, reward

    def drop(self, h: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``h`` through dropout at M's rate whatever the mode, drawn from ``generator``
        (the dream's, so that a seeded dream stays reproducible)."""
        if not self.dropout:
            return h
        keep = torch.rand(h.shape, generator=generator, device=h.device) >= self.dropout
        return h * keep.to(h.dtype) / (1.0 - self.dropout)

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of a batch of sequences (see ``stages.mdnrnn.SequenceBatches``).

        Batch keys: ``z`` ``[B, T, Z]`` inputs, ``action`` ``[B, T, A]``, ``restart``
        ``[B, T]``, ``z_next`` ``[B, T, Z]`` targets, ``mask`` ``[B, T]`` (real steps),
        ``z_mask`` ``[B, T]`` (steps with a next z: not the last of an episode), ``done``
        and ``reward`` ``[B, T]``. Padded steps count in no term.
        """
        params, done_logit, reward, _ = self(batch["z"], batch["action"], batch["restart"])
        z_nll = mixture_density_loss(batch["z_next"], params, batch["z_mask"], check_finite=False)
        z_nll = z_nll / self.z_size  # per dimension, as the original reported it
        loss, logs = z_nll, {"z_nll_per_dim": z_nll.item()}
        mask = batch["mask"]
        if done_logit is not None:
            done_loss = self.done_loss(done_logit, batch["done"], mask)
            loss = loss + done_loss
            logs["done_loss"] = done_loss.item()
        if reward is not None:
            reward_loss = masked_mean((reward.float() - batch["reward"]).square(), mask)
            loss = loss + reward_loss
            logs["reward_loss"] = reward_loss.item()
        logs["loss"] = loss.item()
        return loss, logs

    def done_loss(self, done_logit, done, mask=None) -> torch.Tensor:
        """Binary cross-entropy of the done logits, ends weighted by ``done_pos_weight``,
        averaged over the steps where ``mask`` is True (all without a mask)."""
        pos_weight = torch.tensor(self.done_pos_weight, device=done_logit.device)
        bce = F.binary_cross_entropy_with_logits(
            done_logit.float(), done, reduction="none", pos_weight=pos_weight
        )
        return bce.mean() if mask is None else masked_mean(bce, mask)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the positions where ``mask`` is True; the others (padding) count in no way."""
    return torch.where(mask, values, 0.0).sum() / mask.sum().clamp_min(1)
