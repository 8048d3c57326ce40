"""Tests of the standalone mdn package: values against torch.distributions, not "it ran"."""

from __future__ import annotations

import math
import runpy
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from mdn import (
    MixtureDensityHead,
    MixtureDensityNetwork,
    MixtureParams,
    mixture_density_loss,
    sample_gaussian_mixture,
)

ROOT = Path(__file__).resolve().parents[1]
MIXTURES = ("per_dim", "shared")


def random_params(lead, d, k, mixture, dtype=torch.float32, seed=0, requires_grad=False):
    gen = torch.Generator().manual_seed(seed)
    pi_shape = (*lead, d, k) if mixture == "per_dim" else (*lead, k)
    logits = torch.randn(pi_shape, generator=gen, dtype=dtype)
    mu = torch.randn(*lead, d, k, generator=gen, dtype=dtype) * 2
    sigma = 0.2 + torch.rand(*lead, d, k, generator=gen, dtype=dtype)
    tensors = [F.log_softmax(logits, -1), mu, sigma]
    if requires_grad:
        tensors = [t.requires_grad_() for t in tensors]
    return MixtureParams(*tensors)


def reference_log_prob(y, params):
    """log p(y) written independently with torch.distributions, position by position."""
    log_pi, mu, sigma = params
    normal = torch.distributions.Normal(mu, sigma)
    log_n = normal.log_prob(y.unsqueeze(-1))  # (..., D, K)
    if params.mixture == "per_dim":
        return torch.logsumexp(log_pi + log_n, -1).sum(-1)
    return torch.logsumexp(log_pi + log_n.sum(-2), -1)


# --- log-likelihood ---------------------------------------------------------------------


@pytest.mark.parametrize("mixture", MIXTURES)
@pytest.mark.parametrize("lead", [(7,), (3, 11)])
def test_loss_equals_torch_distributions(mixture, lead):
    params = random_params(lead, d=4, k=3, mixture=mixture)
    y = torch.randn(*lead, 4) * 2
    nll = mixture_density_loss(y, params, reduction="none")
    assert nll.shape == lead
    torch.testing.assert_close(nll, -params.distribution().log_prob(y), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(nll, -reference_log_prob(y, params), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mixture_density_loss(y, params), nll.mean())
    torch.testing.assert_close(mixture_density_loss(y, params, reduction="sum"), nll.sum())


def test_single_gaussian_nll_includes_two_pi_constant():
    params = MixtureParams(torch.zeros(1, 1, 1), torch.zeros(1, 1, 1), torch.ones(1, 1, 1))
    nll = mixture_density_loss(torch.zeros(1, 1), params)
    assert nll.item() == pytest.approx(0.5 * math.log(2 * math.pi), abs=1e-6)


@pytest.mark.parametrize("mixture", MIXTURES)
def test_gradients_match_autograd_through_torch_distributions(mixture):
    params = random_params((5, 3), d=4, k=3, mixture=mixture, requires_grad=True)
    y = torch.randn(5, 3, 4).requires_grad_()
    weights = torch.rand(5, 3)
    ours = torch.autograd.grad(
        (mixture_density_loss(y, params, reduction="none") * weights).sum(), [y, *params]
    )
    ref = torch.autograd.grad((-reference_log_prob(y, params) * weights).sum(), [y, *params])
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mixture", MIXTURES)
def test_gradcheck_float64(mixture):
    params = random_params(
        (2, 3), d=3, k=2, mixture=mixture, dtype=torch.float64, requires_grad=True
    )
    y = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, False, True], [True, True, False]])
    assert torch.autograd.gradcheck(
        lambda y, *p: mixture_density_loss(y, MixtureParams(*p), mask=mask, reduction="none"),
        (y, *params),
    )


@pytest.mark.parametrize("mixture", MIXTURES)
def test_head_weights_sum_to_one(mixture):
    head = MixtureDensityHead(8, 6, 5, mixture=mixture)
    params = head(torch.randn(4, 9, 8) * 10)
    expected = (4, 9, 6, 5) if mixture == "per_dim" else (4, 9, 5)
    assert params.log_pi.shape == expected
    assert params.mu.shape == params.sigma.shape == (4, 9, 6, 5)
    torch.testing.assert_close(params.log_pi.exp().sum(-1), torch.ones(expected[:-1]))
    assert (params.sigma >= head.min_sigma).all()


def test_init_near_uniform_weights_and_unit_sigma():
    model = MixtureDensityNetwork(3, 2, 4)
    params = model(torch.randn(256, 3))
    pi = params.log_pi.exp()
    assert ((pi - 0.25).abs() < 0.02).all()
    assert ((params.sigma - 1).abs() < 0.05).all()


def test_any_leading_dims():
    model = MixtureDensityNetwork(5, 3, 2, hidden_dim=16, n_hidden=3)
    for lead in [(), (4,), (2, 7), (2, 3, 4)]:
        params = model(torch.randn(*lead, 5))
        assert params.mu.shape == (*lead, 3, 2)
        assert mixture_density_loss(torch.randn(*lead, 3), params, reduction="none").shape == lead


# --- mask -------------------------------------------------------------------------------


@pytest.mark.parametrize("mixture", MIXTURES)
def test_mask_excludes_positions(mixture):
    params = random_params((3, 6), d=4, k=3, mixture=mixture, requires_grad=True)
    y = torch.randn(3, 6, 4)
    mask = torch.rand(3, 6) > 0.4
    full = mixture_density_loss(y, params, reduction="none")
    masked_mean = mixture_density_loss(y, params, mask=mask)
    torch.testing.assert_close(masked_mean, full[mask].mean())
    # Changing the padded targets, even to NaN or huge values, changes nothing.
    y_garbage = torch.where(mask.unsqueeze(-1), y, torch.full_like(y, float("nan")))
    assert mixture_density_loss(y_garbage, params, mask=mask).item() == masked_mean.item()
    y_huge = torch.where(mask.unsqueeze(-1), y, torch.full_like(y, 1e30))
    loss = mixture_density_loss(y_huge, params, mask=mask)
    assert loss.item() == masked_mean.item()
    loss.backward()
    # and padded positions receive no gradient.
    assert (params.mu.grad[~mask] == 0).all()
    assert torch.isfinite(params.mu.grad).all()


def test_all_masked_gives_zero_not_nan():
    params = random_params((4,), d=2, k=2, mixture="per_dim")
    loss = mixture_density_loss(torch.randn(4, 2), params, mask=torch.zeros(4, dtype=torch.bool))
    assert loss.item() == 0.0


# --- numerical safety -------------------------------------------------------------------


@pytest.mark.parametrize("mixture", MIXTURES)
@pytest.mark.parametrize("scale", [1e-4, 1.0, 1e4])
def test_finite_for_large_inputs_and_far_targets(mixture, scale):
    model = MixtureDensityNetwork(6, 4, 5, mixture=mixture, activation=torch.nn.ReLU)
    x = torch.randn(32, 6) * scale
    for y in (torch.randn(32, 4), torch.full((32, 4), 1e4), torch.full((32, 4), -1e4)):
        model.zero_grad()
        loss = mixture_density_loss(y, model(x))
        loss.backward()
        assert torch.isfinite(loss)
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("mixture", MIXTURES)
def test_bf16_autocast_loss_in_float32(mixture):
    model = MixtureDensityNetwork(6, 4, 5, mixture=mixture)
    x, y = torch.randn(16, 6) * 100, torch.randn(16, 4) * 100
    with torch.autocast("cpu", dtype=torch.bfloat16):
        params = model(x)
        loss = mixture_density_loss(y.bfloat16(), params)
    assert params.mu.dtype == torch.float32 and loss.dtype == torch.float32
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("mixture", MIXTURES)
def test_float64_model_stays_float64(mixture):
    model = MixtureDensityNetwork(3, 2, 4, mixture=mixture).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    params = model(x)
    assert all(t.dtype == torch.float64 for t in params)
    # a difference far below float32's resolution survives: nothing was cast down
    a, b = model(x)[1], model(x + 1e-12)[1]
    assert (a != b).any() and (a - b).abs().max() < 1e-9
    y = torch.randn(5, 2, dtype=torch.float64)
    assert mixture_density_loss(y, params).dtype == torch.float64
    assert sample_gaussian_mixture(params).dtype == torch.float64


def test_half_precision_layers_are_lifted_to_float32():
    head = MixtureDensityHead(4, 3, 2).half()
    params = head(torch.randn(6, 4).half())
    assert all(t.dtype == torch.float32 for t in params)
    assert torch.allclose(params.log_pi.exp().sum(-1), torch.ones(6, 3))


# --- sampling ---------------------------------------------------------------------------


@pytest.mark.parametrize("mixture", MIXTURES)
@pytest.mark.parametrize("tau", [1.0, 1.5])
def test_sample_moments_match_distribution(mixture, tau):
    n = 200_000
    base = random_params((3,), d=2, k=3, mixture=mixture, seed=3)
    params = MixtureParams(*(t.unsqueeze(0).expand(n, *t.shape) for t in base))
    gen = torch.Generator().manual_seed(0)
    samples = sample_gaussian_mixture(params, temperature=tau, generator=gen)  # (n, 3, 2)
    dist = base.distribution(temperature=tau)
    ref = dist.sample((n,))
    # Mean within 5 standard errors; variance within 3%.
    stderr = dist.variance.sqrt() / math.sqrt(n)
    assert ((samples.mean(0) - dist.mean).abs() < 5 * stderr).all()
    torch.testing.assert_close(samples.var(0), dist.variance, rtol=0.03, atol=0)
    torch.testing.assert_close(samples.var(0), ref.var(0), rtol=0.04, atol=0)
    if tau == 1.0:
        torch.testing.assert_close(base.mean(), dist.mean)
        torch.testing.assert_close(base.variance(), dist.variance)


@pytest.mark.parametrize("mixture", MIXTURES)
def test_temperature_near_zero_gives_mode(mixture):
    params = random_params((50,), d=3, k=4, mixture=mixture)
    samples = sample_gaussian_mixture(params, temperature=1e-8)
    torch.testing.assert_close(samples, params.mode(), rtol=0, atol=1e-3)


def test_temperature_above_one_widens_spread():
    base = random_params((1,), d=2, k=3, mixture="per_dim")
    params = MixtureParams(*(t.expand(50_000, *t.shape[1:]) for t in base))
    spread = {
        tau: sample_gaussian_mixture(params, tau, torch.Generator().manual_seed(0)).std(0)
        for tau in (0.5, 1.0, 2.0)
    }
    assert (spread[0.5] < spread[1.0]).all() and (spread[1.0] < spread[2.0]).all()


@pytest.mark.parametrize("mixture", MIXTURES)
def test_generator_reproducible_and_components_returned(mixture):
    params = random_params((10,), d=3, k=4, mixture=mixture)
    a, ka = sample_gaussian_mixture(
        params, 1.0, torch.Generator().manual_seed(7), return_components=True
    )
    b, kb = sample_gaussian_mixture(
        params, 1.0, torch.Generator().manual_seed(7), return_components=True
    )
    assert torch.equal(a, b) and torch.equal(ka, kb)
    assert ka.shape == ((10, 3) if mixture == "per_dim" else (10,))
    assert ka.min() >= 0 and ka.max() < 4


def test_component_frequencies_follow_weights():
    pi = torch.tensor([0.6, 0.3, 0.1])
    params = MixtureParams(
        pi.log().expand(100_000, 1, 3), torch.zeros(100_000, 1, 3), torch.ones(100_000, 1, 3)
    )
    _, k = sample_gaussian_mixture(
        params, generator=torch.Generator().manual_seed(0), return_components=True
    )
    freq = torch.bincount(k.flatten(), minlength=3) / k.numel()
    torch.testing.assert_close(freq, pi, atol=0.01, rtol=0)


def test_mode_is_mean_of_most_likely_component():
    log_pi = torch.tensor([[[0.1, 0.7, 0.2]]]).log()
    mu = torch.tensor([[[-1.0, 2.0, 5.0]]])
    params = MixtureParams(log_pi, mu, torch.ones_like(mu))
    assert params.mode().item() == 2.0
    assert params.mean().item() == pytest.approx(0.1 * -1 + 0.7 * 2 + 0.2 * 5)


# --- bad input --------------------------------------------------------------------------


def test_bad_input_raises_value_error_with_shapes():
    params = random_params((4,), d=3, k=2, mixture="per_dim")
    with pytest.raises(ValueError, match=r"y must have shape \(4, 3\).*got \(4, 2\)"):
        mixture_density_loss(torch.randn(4, 2), params)
    with pytest.raises(ValueError, match=r"mask must be a bool tensor of shape \(4,\)"):
        mixture_density_loss(torch.randn(4, 3), params, mask=torch.ones(4, 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask must be a bool"):
        mixture_density_loss(torch.randn(4, 3), params, mask=torch.ones(4))
    with pytest.raises(ValueError, match="reduction"):
        mixture_density_loss(torch.randn(4, 3), params, reduction="avg")
    with pytest.raises(ValueError, match="log_pi must be"):
        mixture_density_loss(torch.randn(4, 3), MixtureParams(params.log_pi[..., :1], *params[1:]))
    for tau in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="temperature must be"):
            sample_gaussian_mixture(params, temperature=tau)
        with pytest.raises(ValueError, match="temperature must be"):
            params.distribution(temperature=tau)
    with pytest.raises(ValueError, match="n_components must be an integer >= 1, got 0"):
        MixtureDensityNetwork(1, 1, 0)
    with pytest.raises(ValueError, match="mixture must be one of"):
        MixtureDensityHead(1, 1, 2, mixture="joint")


def test_nan_detected_and_check_can_be_switched_off():
    params = random_params((4,), d=3, k=2, mixture="per_dim")
    y = torch.randn(4, 3)
    y[1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or inf in y"):
        mixture_density_loss(y, params)
    bad = MixtureParams(params.log_pi, params.mu.clone().fill_(float("nan")), params.sigma)
    with pytest.raises(ValueError, match=r"params\.mu"):
        mixture_density_loss(torch.randn(4, 3), bad)
    assert torch.isnan(mixture_density_loss(y, params, check_finite=False))


# --- the README snippet and the toy problem ---------------------------------------------


def test_original_readme_snippet_runs():
    import torch

    from mdn.model import MixtureDensityNetwork
    from mdn.utils import mixture_density_loss, sample_gaussian_mixture

    x = torch.randn(5, 1)
    y = torch.randn(5, 1)
    model = MixtureDensityNetwork(1, 1, 3)
    pred_parameters = model(x)
    loss = mixture_density_loss(y, pred_parameters)
    samples = sample_gaussian_mixture(pred_parameters)
    assert loss.shape == () and torch.isfinite(loss)
    assert samples.shape == (5, 1)


def test_bishop_mdn_beats_single_gaussian():
    bishop = runpy.run_path(str(ROOT / "examples" / "bishop.py"))
    result = bishop["run"](n_train=500, steps=400, seed=0)  # margins 0.7-1.0 over seeds 0-3
    # The single Gaussian cannot follow the three branches; the mixture can.
    assert result["mdn_nll"] < result["gaussian_nll"] - 0.3
