r"""SG-MCMC samplers (:mod:`atomml.uncertainty.sgmcmc`) against a posterior known in closed form.

Bayesian linear regression on fixed features: :math:`y = \Phi w + \varepsilon`,
:math:`\varepsilon \sim N(0, \sigma^2 I)`, prior :math:`w \sim N(0, \alpha^{-1} I)`. Then

.. math:: U(w) = \frac{|y - \Phi w|^2}{2\sigma^2} + \frac{\alpha}{2}|w|^2
               = \tfrac12 (w - m)^T H (w - m) + \text{const},
          \quad H = \alpha I + \Phi^T\Phi/\sigma^2, \quad m = H^{-1}\Phi^T y/\sigma^2,

(complete the square: the gradient :math:`Hw - \Phi^T y/\sigma^2` vanishes at :math:`m`), so
the tempered posterior :math:`p(w|D)^{1/T} \propto \exp(-U/T)` is :math:`N(m, T S)` with
:math:`S = H^{-1}`: the mean does not depend on :math:`T`, the covariance scales with it.

How the samples are judged (``_z_scores``):

- thousands of chains run at once as the rows of a ``(chains, 3)`` parameter: every update of
  the samplers is elementwise, so the rows are independent chains (their noise is independent
  draws; with minibatches each chain draws its own);
- the samples are whitened with the target, :math:`u = L^{-1}(w - m)` with :math:`LL^T = TS`,
  so the target is :math:`N(0, I)` whatever :math:`T`;
- each chain gives one mean and one covariance estimate; the chains are independent, so the
  standard error of the pooled estimate is the spread of the per-chain estimates over
  :math:`\sqrt{\text{chains}}` (batch means with the chains as batches): the autocorrelation
  inside a chain is accounted for without estimating it;
- z = (pooled - target) / standard error for the 3 mean components and the 6 covariance
  entries, all required to be within ``Z_MAX`` = 4.

The samplers are exact only as the step size goes to 0. Each test also computes the stationary
covariance of the discrete chain it runs (exactly, for this Gaussian target) and checks that
its distance from :math:`TS` is below a third of the standard error: the step sizes are chosen
so that the test is a test of the sampler, not of the discretisation (a failure there says
"lower lr", never "widen the tolerance"). With minibatches the gradient noise inflates the
covariance by far more than that; the minibatch test compares with that exact prediction.

Each run is seeded, so its outcome is fixed; over other seeds the 504 z of 8 repetitions had
mean 0.09, standard deviation 1.03 and max |z| 2.9. The standard errors of the whitened
variances are ~0.025 (pSGLD), ~0.02 (SGLD) and ~0.009 (SGHMC): at 4 SE the checks see a noise
variance ~10 % off (pSGLD, SGLD) or ~4 % off (SGHMC); a factor 2, a missing preconditioner in
the noise or the temperature entering as sqrt(T) fail with |z| of 50 to 500.
"""

from __future__ import annotations

import copy
import math
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import pytest
import torch
from torch import Tensor, nn

from atomml.uncertainty.sgmcmc import PSGLD, SGHMC, SampleCollector, keep_sample

DT = torch.float64
Z_MAX = 4.0  # per z-score; with 9 per run, a false alarm has probability ~6e-4 per run
BIAS_MAX = 1 / 3  # the discrete chain's exact error, in standard errors, must stay below this
TEMPERATURES = (1.0, 0.1)


@dataclass(frozen=True)
class Regression:
    """The data and the closed-form (tempered) posterior."""

    phi: Tensor  # (N, 3) features: two correlated inputs and a constant
    y: Tensor  # (N,)
    sigma: float
    alpha: float

    @property
    def num_data(self) -> int:
        return self.phi.shape[0]

    @cached_property
    def precision(self) -> Tensor:  # H
        return self.alpha * torch.eye(3, dtype=DT) + self.phi.T @ self.phi / self.sigma**2

    @cached_property
    def mean(self) -> Tensor:  # m
        return torch.linalg.solve(self.precision, self.phi.T @ self.y / self.sigma**2)

    def covariance(self, temperature: float) -> Tensor:  # T S
        return temperature * torch.linalg.inv(self.precision)


def _problem() -> Regression:
    g = torch.Generator().manual_seed(2023)
    n, sigma = 100, 0.5
    x = torch.randn(n, 2, generator=g, dtype=DT) @ torch.tensor([[1.0, 0.0], [0.6, 1.0]], dtype=DT)
    phi = torch.cat([x, torch.ones(n, 1, dtype=DT)], dim=1)
    y = phi @ torch.tensor([0.8, -0.5, 0.3], dtype=DT) + sigma * torch.randn(n, generator=g, dtype=DT)
    return Regression(phi, y, sigma, alpha=1.0)


PROBLEM = _problem()


class ChainedLinear(nn.Module):
    """``chains`` independent linear models, f_c(x) = x · weight_c + bias_c."""

    def __init__(self, chains: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(chains, 2, dtype=DT))
        self.bias = nn.Parameter(torch.zeros(chains, dtype=DT))

    def w(self) -> Tensor:
        """(chains, 3): the coefficients of the features ``[x1, x2, 1]``."""
        return torch.cat([self.weight, self.bias[:, None]], dim=1)

    def forward(self, phi: Tensor) -> Tensor:
        """Predictions for features ``phi`` (n, 3) or per-chain features (chains, n, 3): (chains, n)."""
        if phi.dim() == 2:
            return self.w() @ phi.T
        return torch.einsum("cnk,ck->cn", phi, self.w())


def _minibatch_loss(model: ChainedLinear, idx: Tensor) -> Tensor:
    """Sum over chains of the samplers' loss: the mean over the batch of the negative
    log-likelihood (y_i - φ_i·w)²/(2σ²) (up to a constant), plus the prior α|w|²/2 over N.

    ``idx`` is (B,) for one batch shared by all chains, or (chains, B).
    """
    p = PROBLEM
    residual = p.y[idx] - model(p.phi[idx])
    return (residual**2).mean(dim=1).sum() / (2 * p.sigma**2) + p.alpha / (2 * p.num_data) * (model.w() ** 2).sum()


# U/N = ½ wᵀ (H/N) w - wᵀ Φᵀy/(σ²N) + yᵀy/(2σ²N)
H_N = PROBLEM.precision / PROBLEM.num_data
B_N = PROBLEM.phi.T @ PROBLEM.y / (PROBLEM.sigma**2 * PROBLEM.num_data)
C_N = float(PROBLEM.y @ PROBLEM.y) / (2 * PROBLEM.sigma**2 * PROBLEM.num_data)


def _full_batch_loss(model: ChainedLinear) -> Tensor:
    """``_minibatch_loss`` over all N points as a quadratic form: the same function (see
    ``test_full_batch_loss_is_the_mean_per_data_point``), but a step costs no (chains, N) arrays."""
    w = model.w()
    return 0.5 * ((w @ H_N) * w).sum() - (w @ B_N).sum() + w.shape[0] * C_N


def test_full_batch_loss_is_the_mean_per_data_point():
    model = ChainedLinear(5)
    with torch.no_grad():
        model.weight.normal_()
        model.bias.normal_()
    full = _minibatch_loss(model, torch.arange(PROBLEM.num_data))
    torch.testing.assert_close(_full_batch_loss(model), full)
    # and N L is U: its minimum is the closed-form posterior mean
    with torch.no_grad():
        model.weight.copy_(PROBLEM.mean[:2].expand(5, 2))
        model.bias.fill_(float(PROBLEM.mean[2]))
    _full_batch_loss(model).backward()
    assert model.weight.grad.abs().max() < 1e-12 and model.bias.grad.abs().max() < 1e-12


# -- statistics ---------------------------------------------------------------------------------


def _z_scores(samples: Tensor, mean: Tensor, cov: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """z of the pooled mean (3,) and covariance (3, 3) of ``samples`` (n, chains, 3) against a
    Gaussian ``N(mean, cov)``, and the standard errors of the whitened covariance entries."""
    chains = samples.shape[1]
    chol = torch.linalg.cholesky(cov)
    u = torch.linalg.solve_triangular(chol, (samples - mean).unsqueeze(-1), upper=False).squeeze(-1)
    chain_means = u.mean(dim=0)  # (chains, 3)
    z_mean = chain_means.mean(dim=0) / (chain_means.std(dim=0) / math.sqrt(chains))
    d = u - u.mean(dim=(0, 1))  # about the pooled mean: the covariance test does not re-test the mean
    chain_covs = torch.einsum("nci,ncj->cij", d, d) / u.shape[0]  # (chains, 3, 3)
    se = chain_covs.std(dim=0) / math.sqrt(chains)
    z_cov = (chain_covs.mean(dim=0) - torch.eye(3, dtype=DT)) / se
    return z_mean, z_cov, se


def _whitened(cov: Tensor, target: Tensor) -> Tensor:
    """``cov`` in the coordinates where ``target`` is the identity."""
    chol = torch.linalg.cholesky(target)
    half = torch.linalg.solve_triangular(chol, cov, upper=False)
    return torch.linalg.solve_triangular(chol, half.transpose(-1, -2), upper=False)


MAX_Z: dict[str, float] = {}  # the largest |z| of each check (printed with pytest -s)


def _check(label: str, samples: Tensor, target: Tensor, chain_cov: Tensor | None = None) -> None:
    """The samples match N(m, target), all |z| < Z_MAX.

    ``chain_cov``: the exact stationary covariance of the discrete chain that was run, when the
    target is the posterior's T S instead; it must be within ``BIAS_MAX`` standard errors of it
    (checked after the z-tests: a wrong sampler also has wrong standard errors).
    """
    z_mean, z_cov, se = _z_scores(samples, PROBLEM.mean, target)
    bias = 0.0
    if chain_cov is not None:
        bias = float(((_whitened(chain_cov, target) - torch.eye(3, dtype=DT)) / se).abs().max())
    z = torch.cat([z_mean, z_cov[tuple(torch.triu_indices(3, 3))]])
    MAX_Z[label] = float(z.abs().max())
    n, chains = samples.shape[:2]
    print(f"\n{label}: max |z| = {MAX_Z[label]:.2f} ({n} x {chains} samples, step bias {bias:.2f} SE)", end="")
    assert z.abs().max() < Z_MAX, f"{label}: mean z {z_mean.tolist()}, covariance z {z_cov.tolist()}"
    assert bias < BIAS_MAX, f"{label}: test design: the step size's bias is {bias:.2f} SE; lower lr"


def _stationary(step: Callable[[Tensor], Tensor], n: int) -> Tensor:
    """The covariance Σ = step(Σ) that an affine map of n x n covariances leaves unchanged: the
    exact stationary covariance of a discrete chain x' = A x + noise, step(Σ) = A Σ Aᵀ + Q(Σ)."""
    const = step(torch.zeros(n, n, dtype=DT))
    basis = torch.eye(n * n, dtype=DT).reshape(n * n, n, n)
    linear = torch.stack([(step(e) - const).reshape(-1) for e in basis], dim=1)
    return torch.linalg.solve(torch.eye(n * n, dtype=DT) - linear, const.reshape(-1)).reshape(n, n)


def _gradient_noise(cov_w: Tensor, batch: int) -> Tensor:
    r"""Covariance of the error of the minibatch estimate of :math:`\nabla U` at stationarity.

    The estimate from ``batch`` points drawn with replacement is
    :math:`\alpha w + \frac{N}{B}\sum_k f_{i_k}` with :math:`f_i = a_i w - r_i`,
    :math:`a_i = \phi_i\phi_i^T/\sigma^2`, :math:`r_i = \phi_i y_i/\sigma^2`; its error has
    covariance :math:`\frac1B(N\sum_i f_i f_i^T - FF^T)`, :math:`F = \sum_i f_i`. Averaged over
    :math:`w \sim (m, \Sigma_w)` (the stationary mean is exactly :math:`m`: the drift is linear
    and the gradient unbiased), with :math:`c_i = a_i m - r_i` and :math:`\sum_i c_i = -\alpha m`:
    :math:`\frac1B(N\sum_i (a_i\Sigma_w a_i + c_i c_i^T) - (H-\alpha)\Sigma_w(H-\alpha) - \alpha^2 m m^T)`.
    """
    p = PROBLEM
    a = p.phi[:, :, None] * p.phi[:, None, :] / p.sigma**2
    c = a @ p.mean - p.phi * p.y[:, None] / p.sigma**2
    data = p.precision - p.alpha * torch.eye(3, dtype=DT)
    per_point = p.num_data * ((a @ cov_w @ a).sum(dim=0) + c.T @ c)
    return (per_point - data @ cov_w @ data - p.alpha**2 * torch.outer(p.mean, p.mean)) / batch


def _sgld_covariance(lr: float, temperature: float) -> Tensor:
    """SGLD with full-batch gradients, x = w - m: x' = (1 - hH) x + sqrt(2hT) ξ."""
    step = torch.eye(3, dtype=DT) - lr * PROBLEM.precision

    def update(cov: Tensor) -> Tensor:
        return step @ cov @ step.T + 2 * lr * temperature * torch.eye(3, dtype=DT)

    return _stationary(update, 3)


def _sghmc_covariance(eta: float, friction: float, temperature: float, batch: int | None = None) -> Tensor:
    """SGHMC, x = (w - m, v): v' = (1-a) v - η (H (w - m) + ζ) + sqrt(2aηT) ξ, w' = w + v'."""
    eye, h = torch.eye(3, dtype=DT), PROBLEM.precision
    transition = torch.cat(
        [torch.cat([eye - eta * h, (1 - friction) * eye], 1), torch.cat([-eta * h, (1 - friction) * eye], 1)]
    )
    both = torch.ones(2, 2, dtype=DT).kron(eye)  # what enters v' enters w' too

    def update(cov: Tensor) -> Tensor:
        noise = 0 if batch is None else eta**2 * _gradient_noise(cov[:3, :3], batch).repeat(2, 2)
        return transition @ cov @ transition.T + noise + 2 * friction * eta * temperature * both

    return _stationary(update, 6)[:3, :3]


# -- the samplers on the closed-form posterior --------------------------------------------------

EIG = torch.linalg.eigvalsh(PROBLEM.precision)  # curvatures of U, ascending
CHAINS = 2000


def _run(
    model: ChainedLinear, sampler: torch.optim.Optimizer, loss: Callable[[ChainedLinear], Tensor],
    collector: SampleCollector, start: int, stop: int,
) -> None:  # fmt: skip
    """Steps ``start`` to ``stop`` (counted from 1), offering each state to the collector."""
    for step in range(start, stop + 1):
        sampler.zero_grad(set_to_none=True)
        loss(model).backward()
        sampler.step()
        collector.collect(step, model)


def _samples(collector: SampleCollector) -> Tensor:
    stacked = collector.stacked()
    return torch.cat([stacked["weight"], stacked["bias"][..., None]], dim=-1)  # (n, chains, 3)


def _set_lr(sampler: torch.optim.Optimizer, lr: float) -> None:
    for group in sampler.param_groups:
        group["lr"] = lr


def _preconditioner(sampler: PSGLD, model: ChainedLinear) -> Tensor:
    return torch.cat([sampler.preconditioner(model.weight), sampler.preconditioner(model.bias)[:, None]], dim=1)


@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_psgld_with_a_frozen_preconditioner_samples_the_tempered_posterior(temperature):
    """pSGLD: RMSprop adapts G during a first burn-in at a large step, then G is frozen
    (``adapt_steps``) and the step lowered; after a second burn-in the chain is Langevin dynamics
    with a constant diagonal G, exact but for the O(lr) step error computed here."""
    p, n = PROBLEM, PROBLEM.num_data
    adapt, relax, keep = 800, 700, 500
    model = ChainedLinear(CHAINS)
    generator = torch.Generator().manual_seed(11 + TEMPERATURES.index(temperature))
    # far from the mode RMSprop's steps are ~ lr N long; at the mode G ~ N / sqrt(T H_jj), so
    # h λ_max(G H) ~ 0.05 / sqrt(T) (stable) during this burn-in
    lr_burn = 0.05 / (n * math.sqrt(float(EIG[-1])))
    sampler = PSGLD(
        model.parameters(), lr=lr_burn, num_data=n, temperature=temperature, adapt_steps=adapt, generator=generator
    )
    collector = SampleCollector(burn_in=adapt + relax, thin=5)
    _run(model, sampler, _full_batch_loss, collector, 1, adapt)
    precond = _preconditioner(sampler, model)
    root = precond.sqrt()
    k = root[:, :, None] * p.precision * root[:, None, :]  # G^½ H G^½ per chain, whose Langevin step is h K
    k_eig, k_vec = torch.linalg.eigh(k)
    lr = 0.005 / float(k_eig[:, -1].max())
    _set_lr(sampler, lr)
    _run(model, sampler, _full_batch_loss, collector, adapt + 1, adapt + relax + keep)
    assert torch.equal(_preconditioner(sampler, model), precond)  # frozen after adapt_steps
    # u = G^-½ (w - m): u' = (1 - hK) u + sqrt(2hT) ξ, so cov u = T K⁻¹ (1 - hK/2)⁻¹ and
    # cov w = G^½ (cov u) G^½; the chains' G differ, the pooled covariance is their mean
    cov_u = k_vec @ torch.diag_embed(temperature / (k_eig * (1 - lr * k_eig / 2))) @ k_vec.transpose(1, 2)
    chain_cov = (root[:, :, None] * cov_u * root[:, None, :]).mean(dim=0)
    _check(f"pSGLD T={temperature}", _samples(collector), p.covariance(temperature), chain_cov)


@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_sgld_samples_the_tempered_posterior(temperature):
    """Plain SGLD (``precondition=False``): burn-in at a large step, then a 10 times smaller one."""
    n = PROBLEM.num_data
    burn, relax, keep = 500, 700, 500
    model = ChainedLinear(CHAINS)
    generator = torch.Generator().manual_seed(21 + TEMPERATURES.index(temperature))
    lr = 0.005 / float(EIG[-1])
    sampler = PSGLD(
        model.parameters(), lr=10 * lr, num_data=n, temperature=temperature, precondition=False, generator=generator
    )
    collector = SampleCollector(burn_in=burn + relax, thin=5)
    _run(model, sampler, _full_batch_loss, collector, 1, burn)
    _set_lr(sampler, lr)
    _run(model, sampler, _full_batch_loss, collector, burn + 1, burn + relax + keep)
    assert not sampler.state[model.weight].get("square_avg")
    chain_cov = _sgld_covariance(lr, temperature)
    _check(f"SGLD T={temperature}", _samples(collector), PROBLEM.covariance(temperature), chain_cov)


@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_sghmc_samples_the_tempered_posterior(temperature):
    """SGHMC, friction for critical damping of the softest mode: burn-in at a large step, then a
    10 times smaller one."""
    n = PROBLEM.num_data
    burn, relax, keep = 250, 250, 500
    model = ChainedLinear(CHAINS)
    generator = torch.Generator().manual_seed(31 + TEMPERATURES.index(temperature))
    eta = 0.004 / float(EIG[-1])
    friction = 2 * math.sqrt(eta * float(EIG[0]))
    sampler = SGHMC(
        model.parameters(), lr=10 * eta, num_data=n, temperature=temperature, friction=friction, generator=generator
    )
    collector = SampleCollector(burn_in=burn + relax, thin=5)
    _run(model, sampler, _full_batch_loss, collector, 1, burn)
    _set_lr(sampler, eta)
    _run(model, sampler, _full_batch_loss, collector, burn + 1, burn + relax + keep)
    chain_cov = _sghmc_covariance(eta, friction, temperature)
    _check(f"SGHMC T={temperature}", _samples(collector), PROBLEM.covariance(temperature), chain_cov)


def test_sghmc_with_minibatches_has_the_exact_mean_and_the_predicted_covariance():
    """Minibatches of 10 of the 100 points (each chain its own, drawn with replacement), the
    trainer's setting: the mean is still exactly m (linear drift, unbiased gradient); the
    gradient noise inflates the covariance, by an amount computed in closed form
    (``_gradient_noise``), which the samples must match. With Chen et al.'s small friction the
    inflation is large (printed): minibatch SG-MCMC needs small steps (or a large friction)."""
    n, batch, temperature, chains = PROBLEM.num_data, 10, 1.0, 1000
    burn, relax, keep = 250, 250, 500
    model = ChainedLinear(chains)
    generator = torch.Generator().manual_seed(41)
    eta = 0.004 / float(EIG[-1])
    friction = 2 * math.sqrt(eta * float(EIG[0]))
    sampler = SGHMC(
        model.parameters(), lr=10 * eta, num_data=n, temperature=temperature, friction=friction, generator=generator
    )
    batches = torch.Generator().manual_seed(42)

    def loss(model: ChainedLinear) -> Tensor:
        return _minibatch_loss(model, torch.randint(n, (chains, batch), generator=batches))

    collector = SampleCollector(burn_in=burn + relax, thin=5)
    _run(model, sampler, loss, collector, 1, burn)
    _set_lr(sampler, eta)
    _run(model, sampler, loss, collector, burn + 1, burn + relax + keep)
    predicted = _sghmc_covariance(eta, friction, temperature, batch=batch)
    inflation = torch.linalg.eigvalsh(_whitened(predicted, PROBLEM.covariance(temperature)))
    print(f"\nSGHMC minibatch {batch}/{n}: covariance / T S has eigenvalues {inflation.numpy().round(3)}", end="")
    _check("SGHMC minibatch", _samples(collector), predicted)


# -- settings, seeding, checkpoints, the loss convention ----------------------------------------


def _small_model(seed: int = 0) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()


X_SMALL = torch.linspace(-1, 1, 24, dtype=DT).reshape(8, 3)
Y_SMALL = X_SMALL.sum(dim=1, keepdim=True).sin()


def _small_loss(model: nn.Module) -> Tensor:
    return ((model(X_SMALL) - Y_SMALL) ** 2).mean()


def _trajectory(model: nn.Module, sampler: torch.optim.Optimizer, steps: int = 5) -> list[Tensor]:
    out = []
    for _ in range(steps):
        sampler.zero_grad()
        _small_loss(model).backward()
        sampler.step()
        out.append(torch.cat([q.detach().flatten() for q in model.parameters()]).clone())
    return out


SAMPLERS = {
    "psgld": lambda params, **kw: PSGLD(params, lr=1e-4, num_data=8, **kw),
    "sgld": lambda params, **kw: PSGLD(params, lr=1e-4, num_data=8, precondition=False, **kw),
    "sghmc": lambda params, **kw: SGHMC(params, lr=1e-4, num_data=8, friction=0.1, **kw),
}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda q: PSGLD(q, lr=1e-3, num_data=10, temperature=-1.0), "temperature must be >= 0"),
        (lambda q: SGHMC(q, lr=1e-3, num_data=10, temperature=-0.5), "temperature must be >= 0"),
        (lambda q: PSGLD(q, lr=1e-3, num_data=0), "num_data must be a positive integer"),
        (lambda q: SGHMC(q, lr=1e-3, num_data=0), "num_data must be a positive integer"),
        (lambda q: PSGLD(q, lr=1e-3, num_data=2.5), "num_data must be a positive integer"),
        (lambda q: PSGLD(q, lr=1e-3, num_data=True), "num_data must be a positive integer"),
        (lambda q: PSGLD(q, lr=0.0, num_data=10), "lr must be > 0"),
        (lambda q: PSGLD(q, lr=1e-3, num_data=10, temperature=math.nan), "temperature must be a finite number"),
        (lambda q: PSGLD(q, lr=1e-3, num_data=10, alpha=1.0), "alpha must be in"),
        (lambda q: PSGLD(q, lr=1e-3, num_data=10, eps=0.0), "eps must be > 0"),
        (lambda q: PSGLD(q, lr=1e-3, num_data=10, adapt_steps=0), "adapt_steps must be None or an integer >= 1"),
        (lambda q: PSGLD(q, lr=1e-3, num_data=10, prior_precision=-1.0), "prior_precision must be >= 0"),
        (lambda q: SGHMC(q, lr=1e-3, num_data=10, friction=0.0), "friction must be in"),
        (lambda q: SGHMC(q, lr=1e-3, num_data=10, friction=1.5), "friction must be in"),
        (lambda q: PSGLD([{"params": q, "temperature": -1.0}], lr=1e-3, num_data=10), "temperature must be >= 0"),
        (lambda q: SGHMC([{"params": q, "num_data": 0}], lr=1e-3, num_data=10), "num_data must be a positive integer"),
    ],
)
def test_invalid_settings_raise_value_error(make, message):
    with pytest.raises(ValueError, match=message):
        make(list(_small_model().parameters()))


def test_invalid_collector_settings_raise_value_error():
    with pytest.raises(ValueError, match="burn_in must be an integer >= 0"):
        SampleCollector(burn_in=-1)
    with pytest.raises(ValueError, match="thin must be an integer >= 1"):
        SampleCollector(burn_in=0, thin=0)


@pytest.mark.parametrize("name", SAMPLERS)
def test_seeding_makes_samples_reproducible(name):
    make = SAMPLERS[name]

    def run(seed: int | None = None, generator_seed: int | None = None) -> list[Tensor]:
        model = _small_model()
        generator = None if generator_seed is None else torch.Generator().manual_seed(generator_seed)
        if seed is not None:
            torch.manual_seed(seed)
        return _trajectory(model, make(model.parameters(), generator=generator))

    for a, b in [(run(generator_seed=3), run(generator_seed=3)), (run(seed=3), run(seed=3))]:
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(run(generator_seed=3)[-1], run(generator_seed=4)[-1])
    assert not torch.equal(run(seed=3)[-1], run(seed=4)[-1])
    # the generator, not the global RNG, drives the noise
    torch.manual_seed(100)
    a = run(generator_seed=3)
    torch.manual_seed(200)
    assert torch.equal(a[-1], run(generator_seed=3)[-1])


@pytest.mark.parametrize("name", SAMPLERS)
def test_state_dict_resumes_a_chain_exactly(name):
    """Optimiser state (RMSprop average, momentum, frozen flag) and the generator's state travel
    in ``state_dict()``: a resumed chain takes exactly the steps of the uninterrupted one."""
    make = SAMPLERS[name]
    extra = {"adapt_steps": 3} if name == "psgld" else {}
    model = _small_model()
    sampler = make(model.parameters(), generator=torch.Generator().manual_seed(5), **extra)
    _trajectory(model, sampler, 4)
    saved_model, saved_sampler = copy.deepcopy(model.state_dict()), copy.deepcopy(sampler.state_dict())
    uninterrupted = _trajectory(model, sampler, 4)

    resumed_model = _small_model(seed=1)
    resumed_model.load_state_dict(saved_model)
    resumed = make(resumed_model.parameters(), generator=torch.Generator().manual_seed(999), **extra)
    resumed.load_state_dict(saved_sampler)
    assert all(torch.equal(x, y) for x, y in zip(uninterrupted, _trajectory(resumed_model, resumed, 4)))


def test_psgld_preconditioner_adapts_then_freezes():
    model = _small_model()
    sampler = PSGLD(model.parameters(), lr=1e-4, num_data=8, adapt_steps=3)
    p = next(model.parameters())
    assert sampler.preconditioner(p) is None
    values = []
    for _ in range(5):
        _trajectory(model, sampler, 1)
        values.append(sampler.preconditioner(p).clone())
    assert not torch.equal(values[1], values[2])  # adapting for the first 3 steps
    assert torch.equal(values[2], values[3]) and torch.equal(values[3], values[4])  # then frozen

    other = PSGLD(model.parameters(), lr=1e-4, num_data=8)
    _trajectory(model, other, 2)
    other.freeze_preconditioner()
    frozen = other.preconditioner(p).clone()
    reloaded = PSGLD(model.parameters(), lr=1e-4, num_data=8)
    reloaded.load_state_dict(other.state_dict())
    _trajectory(model, reloaded, 3)
    assert torch.equal(reloaded.preconditioner(p), frozen)  # the flag survives a checkpoint
    assert PSGLD(model.parameters(), lr=1e-4, num_data=8, precondition=False).preconditioner(p) is None
    with pytest.raises(KeyError):
        sampler.preconditioner(torch.zeros(1))


def test_at_zero_temperature_the_samplers_are_sgd():
    """The loss convention: the drift is ``lr * num_data`` times the mean loss's gradient, so at
    T = 0 SGLD is SGD with learning rate lr N, and SGHMC is SGD with momentum 1 - friction."""
    lr, n, friction = 1e-3, 8, 0.1
    pairs = [
        (
            lambda q: PSGLD(q, lr=lr, num_data=n, temperature=0.0, precondition=False),
            lambda q: torch.optim.SGD(q, lr=lr * n),
        ),
        (
            lambda q: SGHMC(q, lr=lr, num_data=n, temperature=0.0, friction=friction),
            lambda q: torch.optim.SGD(q, lr=lr * n, momentum=1 - friction),
        ),
    ]
    for make, reference in pairs:
        a, b = _small_model(), _small_model()
        for x, y in zip(_trajectory(a, make(a.parameters()), 6), _trajectory(b, reference(b.parameters()), 6)):
            torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-14)


def test_psgld_at_zero_temperature_is_rmsprop_after_the_first_step():
    """pSGLD's drift is RMSprop's step with learning rate lr N; V starts at the first g² (RMSprop: 0)."""
    lr, n, alpha, eps = 1e-3, 8, 0.9, 1e-8
    model = _small_model()
    sampler = PSGLD(model.parameters(), lr=lr, num_data=n, temperature=0.0, alpha=alpha, eps=eps)
    params = list(model.parameters())
    square = None
    for _ in range(4):
        sampler.zero_grad()
        _small_loss(model).backward()
        grads = [q.grad.clone() for q in params]
        before = [q.detach().clone() for q in params]
        if square is None:
            square = [g * g for g in grads]
        else:
            square = [alpha * v + (1 - alpha) * g * g for v, g in zip(square, grads)]
        sampler.step()
        for q, q0, g, v in zip(params, before, grads, square):
            torch.testing.assert_close(q.detach(), q0 - lr * n * g / (eps + v.sqrt()), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", SAMPLERS)
def test_prior_precision_is_a_gaussian_prior_in_the_loss(name):
    """``prior_precision=λ`` with the likelihood alone as the loss takes the same steps as the
    prior's λ|θ|²/(2N) added to the loss (the convention: the loss holds prior / N)."""
    make, lam, n = SAMPLERS[name], 3.0, 8

    def run(builtin: bool) -> list[Tensor]:
        model = _small_model()
        extra = {"prior_precision": lam} if builtin else {}
        sampler = make(model.parameters(), generator=torch.Generator().manual_seed(1), **extra)
        out = []
        for _ in range(5):
            sampler.zero_grad()
            loss = _small_loss(model)
            if not builtin:
                loss = loss + lam / (2 * n) * sum((q**2).sum() for q in model.parameters())
            loss.backward()
            sampler.step()
            out.append(torch.cat([q.detach().flatten() for q in model.parameters()]).clone())
        return out

    for x, y in zip(run(True), run(False)):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("name", SAMPLERS)
def test_parameters_without_a_gradient_are_not_moved(name):
    model = _small_model()
    frozen = model[2].bias
    frozen.requires_grad_(False)
    before = frozen.detach().clone()
    _trajectory(model, SAMPLERS[name](model.parameters()), 3)
    assert torch.equal(frozen, before)


def test_sample_collector_burn_in_thinning_and_chains():
    assert [s for s in range(1, 21) if keep_sample(s, burn_in=10, thin=3)] == [13, 16, 19]
    assert [s for s in range(1, 5) if keep_sample(s, burn_in=0)] == [1, 2, 3, 4]
    model = _small_model()
    collector = SampleCollector(burn_in=2, thin=2, device="cpu")
    for chain in range(2):
        for step in range(1, 7):
            with torch.no_grad():
                model[0].weight.fill_(10 * chain + step)
            assert collector.collect(step, model, chain=chain) == (step in (4, 6))
    assert len(collector) == 4 and collector.steps == [4, 6, 4, 6] and collector.chains == [0, 0, 1, 1]
    member = collector.committee(chain=1)[0]
    assert set(member) == set(model.state_dict()) and float(member["0.weight"][0, 0]) == 14
    assert not member["0.weight"].requires_grad
    with torch.no_grad():
        model[0].weight.fill_(-1)  # a kept sample is a copy, not a view of the weights
    assert float(member["0.weight"][0, 0]) == 14
    stacked = collector.stacked()
    assert stacked["0.weight"].shape == (4, *model[0].weight.shape)
    assert stacked["0.weight"][:, 0, 0].tolist() == [4, 6, 14, 16]
    assert collector.stacked(chain=0)["0.weight"][:, 0, 0].tolist() == [4, 6]
    with pytest.raises(ValueError, match="no samples kept for chain 7"):
        collector.stacked(chain=7)
    # a state dict, as well as a module, can be collected; the collector itself checkpoints
    assert collector.collect(8, {"w": torch.ones(2)}, chain=2)
    restored = SampleCollector()
    restored.load_state_dict(collector.state_dict())
    assert (restored.burn_in, restored.thin) == (2, 2)
    assert (restored.steps, restored.chains) == ([4, 6, 4, 6, 8], [0, 0, 1, 1, 2])
    assert torch.equal(restored.committee(chain=2)[0]["w"], torch.ones(2))


def test_importing_the_package_loads_no_submodule():
    code = (
        "import sys, atomml.uncertainty as u\n"
        "assert not [m for m in sys.modules if m.startswith('atomml.uncertainty.')], sorted(sys.modules)\n"
        "try:\n    u.nothing\nexcept AttributeError:\n    pass\nelse:\n    raise SystemExit('no AttributeError')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    import atomml.uncertainty

    assert atomml.uncertainty.__getattr__("sgmcmc") is sys.modules["atomml.uncertainty.sgmcmc"]


def test_samplers_run_on_the_device_and_a_cpu_generator_gives_the_same_noise(device):
    """A generator on another device than the weights (a CPU one for CUDA weights) draws there:
    the same seed gives the same chain on any device."""
    trajectories = {}
    for where in {torch.device("cpu"), device}:
        for name, make in SAMPLERS.items():
            model = _small_model().to(where)
            sampler = make(model.parameters(), generator=torch.Generator().manual_seed(7))
            sampler.zero_grad()
            ((model(X_SMALL.to(where)) - Y_SMALL.to(where)) ** 2).mean().backward()
            sampler.step()
            trajectories[where, name] = torch.cat([q.detach().flatten().cpu() for q in model.parameters()])
    for (where, name), values in trajectories.items():
        assert torch.isfinite(values).all()
        torch.testing.assert_close(values, trajectories[torch.device("cpu"), name], rtol=1e-10, atol=1e-12)
