"""C: the linear controller of World Models (Ha & Schmidhuber, 2018, Sec. 2.3).

a_t = squash(W [z_t, h_t] + b) for CarRacing (867 parameters: 3 x (32 + 256) + 3), and
a_t = tanh(W [z_t, c_t, h_t]) for Doom (1,088 parameters: 64 + 512 + 512, no bias), as
the paper. CarRacing's squash: steer tanh, gas (tanh + 1) / 2, brake clip(tanh, 0, 1),
gas and brake scaled by ``max_pedal`` (1: the game's whole range). A dream knows nothing
true about pedal levels its data never showed, and a controller evolved in it can learn
to exploit them; ``max_pedal`` keeps C inside the data policy's range (0.5 for
CarRacing's), in the dream and in the game alike.

With ``repeat`` K > 1, C acts on every K-th step only and its action is held in between
(action repeat, as in most deep RL on Atari, where the agent acts every 4th frame), in
the dream and in the game alike. A controller that may change its move at every step can
learn to jitter between moves in ways the dream rewards and the game does not; acting
every 8th step removed such an exploit in DoomTakeCover (docs/results.md).

CMA-ES sees a controller as one flat vector ``[W.flatten(), b]``; ``act_batched`` plays
P such vectors at once, one per dream.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

SQUASHES = ("tanh", "carracing")


def squash(y: torch.Tensor, kind: str, max_pedal: float = 1.0) -> torch.Tensor:
    """Map the linear output ``[..., A]`` to the game's action range (CarRacing's gas and
    brake to [0, max_pedal])."""
    if kind == "tanh":
        return torch.tanh(y)
    if kind == "carracing":
        t = torch.tanh(y)
        gas, brake = (t[..., 1] + 1) / 2, t[..., 2].clamp(0, 1)
        return torch.stack([t[..., 0], gas * max_pedal, brake * max_pedal], -1)
    raise ValueError(f"squash must be one of {SQUASHES}, got {kind!r}")


def observation(z: torch.Tensor, h: torch.Tensor, c: torch.Tensor, with_c: bool) -> torch.Tensor:
    """What C sees, ``[..., obs]``: [z, c, h] (Doom in the paper, ``with_c``) or [z, h]."""
    return torch.cat((z, c, h) if with_c else (z, h), -1)


def observation_size(z_size: int, hidden_size: int, with_c: bool) -> int:
    return z_size + hidden_size * (2 if with_c else 1)


class Controller:
    """Shapes and maths of a linear controller; the parameters live in flat vectors.

    Args:
        obs_size: Size of the input ([z, h] or [z, c, h]).
        action_dim: Size of the action.
        bias: Whether there is a bias b.
        squash_kind: ``"tanh"`` or ``"carracing"``.
        max_pedal: The most gas and brake (``"carracing"`` only), in (0, 1].
        repeat: C acts every ``repeat`` steps and holds its action in between (1: every
            step, the paper).
    """

    def __init__(
        self,
        obs_size: int,
        action_dim: int,
        bias: bool,
        squash_kind: str,
        max_pedal: float = 1.0,
        repeat: int = 1,
    ) -> None:
        if squash_kind not in SQUASHES:
            raise ValueError(f"squash must be one of {SQUASHES}, got {squash_kind!r}")
        if not 0.0 < max_pedal <= 1.0:
            raise ValueError(f"max_pedal must be in (0, 1], got {max_pedal!r}")
        if max_pedal != 1.0 and squash_kind != "carracing":
            raise ValueError(f"max_pedal is for CarRacing's pedals; squash {squash_kind!r} "
                             f"has none, got max_pedal={max_pedal!r}")  # fmt: skip
        if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
            raise ValueError(f"repeat must be a whole number >= 1, got {repeat!r}")
        self.obs_size, self.action_dim, self.bias, self.squash_kind = (
            obs_size, action_dim, bias, squash_kind,
        )  # fmt: skip
        self.max_pedal, self.repeat = max_pedal, repeat
        self.n_params = action_dim * obs_size + (action_dim if bias else 0)

    @property
    def spec(self) -> dict:
        """Everything needed to rebuild this controller (stored beside its parameters)."""
        return {"obs_size": self.obs_size, "action_dim": self.action_dim, "bias": self.bias,
                "squash_kind": self.squash_kind, "max_pedal": self.max_pedal,
                "repeat": self.repeat}  # fmt: skip

    def split(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Flat ``[..., n_params]`` -> (W ``[..., A, obs]``, b ``[..., A]`` or None)."""
        if params.shape[-1] != self.n_params:
            raise ValueError(
                f"controller for obs_size={self.obs_size}, action_dim={self.action_dim} has "
                f"{self.n_params} parameters, got a vector of {params.shape[-1]}"
            )
        n_w = self.action_dim * self.obs_size
        w = params[..., :n_w].reshape(*params.shape[:-1], self.action_dim, self.obs_size)
        return w, (params[..., n_w:] if self.bias else None)

    def act(self, params: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """One controller ``[n_params]`` on observations ``[n, obs]`` -> actions ``[n, A]``."""
        w, b = self.split(params)
        y = obs @ w.T
        return squash(y if b is None else y + b, self.squash_kind, self.max_pedal)

    def act_batched(self, params: torch.Tensor, which: torch.Tensor, obs: torch.Tensor):
        """Controller ``params[which[i]]`` on ``obs[i]``: params ``[P, n_params]``,
        which ``[n]``, obs ``[n, obs]`` -> actions ``[n, A]``."""
        w, b = self.split(params)  # (P, A, obs), (P, A)
        y = torch.einsum("nao,no->na", w[which], obs)
        return squash(y if b is None else y + b[which], self.squash_kind, self.max_pedal)

    def dream_policy(self, params: torch.Tensor, which: torch.Tensor) -> Callable:
        """A ``Dream.rollout`` policy for ``len(which)`` dreams that start together (so all
        running dreams are on the same step): dream i is played by ``params[which[i]]``,
        which acts on steps 0, repeat, 2 repeat, ...; in between each running dream gets
        its last action again (``held`` for a batch of dreams)."""
        actions, step = torch.zeros(len(which), self.action_dim, device=which.device), 0

        def choose(obs: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
            nonlocal step
            if step % self.repeat == 0:
                actions[index] = self.act_batched(params, which[index], obs)
            step += 1
            return actions[index]

        return choose


def held(act: Callable, repeat: int) -> Callable:
    """``act`` called on the 1st, (repeat + 1)-th, ... call only; the calls in between give
    its last action again (action repeat in one episode)."""
    step, action = 0, None

    def choose(*args):
        nonlocal step, action
        if step % repeat == 0:
            action = act(*args)
        step += 1
        return action

    return choose
