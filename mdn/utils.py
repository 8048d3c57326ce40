"""Loss and sampling for Gaussian mixtures (Bishop, 1994; Ha & Schmidhuber, 2018).

Everything is computed in log space (log_softmax weights, logsumexp over components),
in float32 even when the network ran under bf16/fp16 autocast, so the loss stays finite
for targets far from every component.
"""

from __future__ import annotations

import math

import torch

from mdn.params import MixtureParams, check_params, check_temperature

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_REDUCTIONS = ("mean", "sum", "none")


def mixture_density_loss(
    y: torch.Tensor,
    params: MixtureParams,
    mask: torch.Tensor | None = None,
    reduction: str = "mean",
    check_finite: bool = True,
) -> torch.Tensor:
    """Negative log-likelihood, in nats, of the whole target vector under the mixture.

    Includes the ``log(2 pi)`` constant, so it is comparable with any other density.

    Args:
        y: Targets ``[..., D]``.
        params: Mixture parameters for the same positions (``mu`` is ``[..., D, K]``).
        mask: Optional bool ``[...]``; positions where it is False (padding) count in no
            way: their loss is 0 and they are left out of the mean.
        reduction: ``"mean"`` over (unmasked) positions, ``"sum"``, or ``"none"`` for the
            per-position loss ``[...]``.
        check_finite: Raise ValueError on NaN/inf in ``y`` or NaN in the parameters. Costs
            a device sync; switch off in hot loops once the data is known to be clean.

    Returns:
        A scalar for "mean"/"sum", else ``[...]``; float32 (float64 if the inputs are).
    """
    check_params(params)
    _check_target(y, params)
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if mask is not None:
        _check_mask(mask, y)
        y = torch.where(mask.unsqueeze(-1), y, torch.zeros((), dtype=y.dtype, device=y.device))
    dtype = torch.float64 if torch.float64 in (y.dtype, params.mu.dtype) else torch.float32
    with torch.autocast(device_type=y.device.type, enabled=False):
        y = y.to(dtype)
        params = MixtureParams(*(t.to(dtype) for t in params))
        if check_finite:
            _check_finite(y, params)
        nll = _MixtureNLL.apply(y, *params)  # (...)
    if mask is not None:
        nll = nll.masked_fill(~mask, 0.0)
    if reduction == "none":
        return nll
    if reduction == "sum":
        return nll.sum()
    count = nll.numel() if mask is None else mask.sum().clamp_min(1)
    return nll.sum() / count


class _MixtureNLL(torch.autograd.Function):
    """-log p(y) per position, ``[...]``, with a hand-written backward.

    Autograd through the same formula stores five (..., D, K) intermediates and walks a
    dozen kernels back; the gradients have a closed form in the responsibilities
    r = softmax_k(log_pi + log N(y | mu, sigma)) and z = (y - mu) / sigma:
    d/dlog_pi = -r, d/dmu = -r z / sigma, d/dsigma = -r (z^2 - 1) / sigma,
    d/dy = sum_k r z / sigma (each times the incoming gradient).
    """

    @staticmethod
    def forward(ctx, y, log_pi, mu, sigma):
        per_dim = log_pi.dim() == mu.dim()
        z = (y.unsqueeze(-1) - mu).div_(sigma)  # (..., D, K)
        log_normal = z.square().mul_(-0.5).sub_(sigma.log()).sub_(_LOG_SQRT_2PI)
        a = log_normal.add_(log_pi) if per_dim else log_normal.sum(-2).add_(log_pi)
        lse = torch.logsumexp(a, dim=-1, keepdim=True)  # (..., D, 1) or (..., 1)
        r = a.sub_(lse).exp_()  # responsibilities, same shape as log_pi
        ctx.save_for_backward(z, r, sigma)
        ctx.per_dim = per_dim
        lse = lse.squeeze(-1)
        return -(lse.sum(-1) if per_dim else lse)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        z, r, sigma = ctx.saved_tensors
        g = grad.unsqueeze(-1)  # (..., 1)
        g_r = (r * g.unsqueeze(-1)) if ctx.per_dim else (r * g)  # g * r, shaped as log_pi
        g_rk = g_r if ctx.per_dim else g_r.unsqueeze(-2)  # broadcasts against (..., D, K)
        t = z.div(sigma).mul_(g_rk)  # g r z / sigma, (..., D, K)
        grad_y = t.sum(-1) if ctx.needs_input_grad[0] else None
        grad_sigma = None
        if ctx.needs_input_grad[3]:
            grad_sigma = t.mul(z).sub_(g_rk / sigma).neg_()
        return grad_y, -g_r, t.neg_(), grad_sigma


def sample_gaussian_mixture(
    params: MixtureParams,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    return_components: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Draw one sample of y per position.

    As in World Models, the mixture logits are divided by ``temperature`` (tau) and the
    Gaussian noise is multiplied by ``sqrt(tau)``: tau -> 0 gives the mode, tau > 1 a
    wider spread. With ``per_dim`` a component is drawn for every dimension on its own.

    Args:
        params: Mixture parameters, ``mu`` ``[..., D, K]``.
        temperature: tau > 0.
        generator: Optional ``torch.Generator`` for reproducible draws.
        return_components: Also return the drawn component indices, ``[..., D]``
            (per_dim) or ``[...]`` (shared).

    Returns:
        Samples ``[..., D]``, or ``(samples, components)``.
    """
    check_params(params)
    tau = check_temperature(temperature)
    log_pi, mu, sigma = params
    # Inverse CDF: one uniform per mixture. u is scaled by the total so that rounding in
    # the cumulative sum can never select a component of weight zero.
    wide = log_pi if log_pi.dtype == torch.float64 else log_pi.float()
    probs = torch.softmax(wide / tau, dim=-1)
    cdf = probs.cumsum(-1)  # (..., D, K) or (..., K)
    u = torch.rand(cdf.shape[:-1], generator=generator, device=cdf.device) * cdf[..., -1]
    components = (cdf <= u.unsqueeze(-1)).sum(-1)  # (..., D) or (...)
    k = components.unsqueeze(-1)
    if params.mixture == "shared":
        k = k.unsqueeze(-2).expand(*mu.shape[:-1], 1)
    mu_k = mu.gather(-1, k).squeeze(-1)  # (..., D)
    sigma_k = sigma.gather(-1, k).squeeze(-1)
    noise = torch.randn(mu_k.shape, generator=generator, dtype=mu.dtype, device=mu.device)
    y = mu_k + sigma_k * math.sqrt(tau) * noise
    return (y, components) if return_components else y


def _check_target(y: torch.Tensor, params: MixtureParams) -> None:
    expected = params.mu.shape[:-1]
    if y.shape != expected:
        raise ValueError(
            f"y must have shape {tuple(expected)} to match params.mu {tuple(params.mu.shape)}, "
            f"got {tuple(y.shape)}"
        )


def _check_mask(mask: torch.Tensor, y: torch.Tensor) -> None:
    if mask.dtype != torch.bool or mask.shape != y.shape[:-1]:
        raise ValueError(
            f"mask must be a bool tensor of shape {tuple(y.shape[:-1])} (y without its last "
            f"dim), got {mask.dtype} {tuple(mask.shape)}"
        )


def _check_finite(y: torch.Tensor, params: MixtureParams) -> None:
    checks = {
        "y": torch.isfinite(y).all(),
        "params.log_pi": ~torch.isnan(params.log_pi).any(),
        "params.mu": torch.isfinite(params.mu).all(),
        "params.sigma": torch.isfinite(params.sigma).all(),
    }
    bad = [name for name, ok in checks.items() if not ok]
    if bad:
        raise ValueError(
            f"mixture_density_loss got NaN or inf in {', '.join(bad)} "
            "(pass check_finite=False to skip this check)"
        )
