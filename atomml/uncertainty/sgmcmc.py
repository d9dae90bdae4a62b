r"""Stochastic-gradient MCMC: weights drawn from the (tempered) posterior instead of one minimum.

Two samplers, both :class:`torch.optim.Optimizer` subclasses that work on the parameters of
any :class:`torch.nn.Module` (Thaler, Doehner & Zavadlav, JCTC 2023, used both for neural
network potentials):

- :class:`PSGLD`: stochastic-gradient Langevin dynamics preconditioned with RMSprop
  (Li, Chen, Carlson & Carin, AAAI 2016); plain SGLD (Welling & Teh, ICML 2011) with
  ``precondition=False``;
- :class:`SGHMC`: stochastic-gradient Hamiltonian Monte Carlo (Chen, Fox & Guestrin, ICML 2014).

and :class:`SampleCollector`, which keeps every ``thin``-th state after ``burn_in`` steps of
one or several chains; the kept weights form a committee.

The loss convention
-------------------
With data :math:`D = \{d_1..d_N\}`, likelihood :math:`p(d_i|\theta)` and prior
:math:`p(\theta)`, the potential energy of the weights is

.. math:: U(\theta) = -\sum_{i=1}^N \log p(d_i|\theta) - \log p(\theta),

and the samplers target the tempered ("cold" for :math:`T < 1`) posterior

.. math:: \pi_T(\theta) \propto p(\theta|D)^{1/T} \propto \exp(-U(\theta)/T).

The loss handed to ``loss.backward()`` is what ordinary training uses: the **mean** over a
minibatch :math:`B` of the per-data-point negative log-likelihood, plus the prior divided by
:math:`N`,

.. math:: L(\theta) = -\frac{1}{|B|}\sum_{i\in B}\log p(d_i|\theta) - \frac{1}{N}\log p(\theta),
          \qquad E[L] = U/N,

so that :math:`N\nabla L` is an unbiased estimate of :math:`\nabla U`. The samplers multiply by
``num_data`` (:math:`N`) internally. A Gaussian prior :math:`\theta \sim N(0, \lambda^{-1} I)`
can instead be given as ``prior_precision=λ``: the sampler then adds :math:`\lambda\theta` to
:math:`\nabla U` itself and the loss holds the likelihood alone.

Two consequences for a trainer:

- a loss is a log-likelihood only up to its scale: a mean squared error
  :math:`\overline{\Delta^2}` is :math:`-\log p/N` for a Gaussian noise of variance
  :math:`\sigma^2` only as :math:`\overline{\Delta^2}/(2\sigma^2)`. Multiplying the loss by
  :math:`c` samples :math:`\exp(-cU/T)`, i.e. it is the same as dividing the temperature by
  :math:`c`; the loss weights and the temperature must be chosen together;
- the noise is injected by the sampler with variance proportional to ``temperature``; at
  ``temperature=0`` no noise is drawn and the samplers are optimisers (SGD, RMSprop, SGD with
  momentum), so the same code path does a warm start.

Discretisation and gradient noise
---------------------------------
Both samplers are first-order discretisations of a stochastic differential equation whose
stationary distribution is exactly :math:`\pi_T`. With exact (full-batch) gradients and a fixed
preconditioner the error of the sampled distribution is :math:`O(\mathrm{lr})`: for a Gaussian
posterior with precision :math:`H` and plain SGLD, the sampled mean is exact and the sampled
covariance is :math:`T H^{-1}(1 - \mathrm{lr}\,H/2)^{-1}`. Minibatch gradients are unbiased
(the mean stays exact for a Gaussian posterior) but add, per step, the covariance of
:math:`\mathrm{lr}\,N\nabla L`, about :math:`\mathrm{lr}^2 (N/|B|)\,k` along a direction of
curvature :math:`k` of :math:`U`, to the injected :math:`2\,\mathrm{lr}\,T` (SGLD; SGHMC injects
only :math:`2\,a\,\mathrm{lr}\,T`): the covariance grows by a relative
:math:`\sim \mathrm{lr}\,k\,N/(2|B|T)` (SGLD), :math:`\sim \mathrm{lr}\,k\,N/(2a|B|T)` (SGHMC).
Small steps, large batches, a large friction and temperatures near 1 keep it small; at
:math:`T = 0.1` it is ten times larger than at :math:`T = 1`. (In the tests, SGHMC with
:math:`\mathrm{lr}\,k_{max} = 0.004`, :math:`a = 0.07` and 10 of 100 points per batch
samples variances 6-18 % too large at :math:`T = 1`, exactly as predicted.)

Random numbers come from ``generator`` when one is given (drawn on its device and moved to the
parameters': a generator on the parameters' device is fastest, a CPU one gives the same noise
on any device), otherwise from torch's global generator of the parameters' device (seeded by
:func:`torch.manual_seed`). The sampler's ``state_dict()`` holds its generator's state, so a
resumed chain continues exactly. Parameters whose ``.grad`` is ``None`` are not moved.

Several chains: run the sampler several times with different seeds, or, for tiny models,
stack the chains along a batch dimension of the parameters: every update here is elementwise
(the preconditioner is diagonal), so the rows of a ``(chains, ...)`` parameter whose loss is a
sum over chains are independent chains exactly.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["PSGLD", "SGHMC", "SampleCollector", "keep_sample"]


def _number(group: dict[str, Any], name: str) -> float:
    value = group[name]
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _check_common(group: dict[str, Any]) -> None:
    """Raise ValueError with a clear message for a setting no sampler can use."""
    if _number(group, "lr") <= 0:
        raise ValueError(f"lr must be > 0 (the step size), got {group['lr']!r}")
    num_data = group["num_data"]
    if isinstance(num_data, bool) or not isinstance(num_data, numbers.Integral) or num_data <= 0:
        raise ValueError(
            f"num_data must be a positive integer (the number of training data points N; the loss is "
            f"the mean per data point and the sampler multiplies its gradient by N), got {num_data!r}"
        )
    if _number(group, "temperature") < 0:
        raise ValueError(
            f"temperature must be >= 0 (the samples follow p(θ|D)^(1/T); T=1 is the posterior, "
            f"T<1 a cold posterior, T=0 no noise), got {group['temperature']!r}"
        )
    if _number(group, "prior_precision") < 0:
        raise ValueError(f"prior_precision must be >= 0 (1 / prior variance), got {group['prior_precision']!r}")


class _SGMCMC(torch.optim.Optimizer):
    """What both samplers share: validated settings, the noise source and its checkpointing."""

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any], generator: torch.Generator | None) -> None:
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        self.generator = generator
        self._check(defaults)
        super().__init__(params, defaults)

    def _check(self, group: dict[str, Any]) -> None:
        _check_common(group)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        self._check(self.param_groups[-1])  # a group may override the defaults: check its own settings

    def _gradient(self, p: Tensor, group: dict[str, Any]) -> Tensor:
        """:math:`\\nabla U / N`: the loss's gradient plus the built-in prior's share, if any."""
        assert p.grad is not None
        if p.grad.is_sparse:
            raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
        if group["prior_precision"]:
            return p.grad.add(p.detach(), alpha=group["prior_precision"] / group["num_data"])
        return p.grad

    def _noise(self, p: Tensor) -> Tensor:
        """A standard normal draw shaped like ``p`` (drawn where the generator is, then moved to ``p``)."""
        device = p.device if self.generator is None else self.generator.device
        return torch.randn(p.shape, generator=self.generator, dtype=p.dtype, device=device).to(p.device)

    def state_dict(self) -> dict[str, Any]:
        """The optimiser's state, plus the generator's state when the sampler owns one (exact resume)."""
        state = super().state_dict()
        if self.generator is not None:
            state["generator_state"] = self.generator.get_state()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        generator_state = state_dict.pop("generator_state", None)
        super().load_state_dict(state_dict)
        if generator_state is not None and self.generator is not None:
            self.generator.set_state(generator_state)


class PSGLD(_SGMCMC):
    r"""Preconditioned stochastic-gradient Langevin dynamics (pSGLD; plain SGLD as a special case).

    With :math:`g_t = \nabla L(\theta_t)` the gradient of the loss (mean per data point, see the
    module docstring), :math:`h` = ``lr``, :math:`N` = ``num_data``, :math:`T` = ``temperature``
    and :math:`\xi_t \sim N(0, I)`, one step is

    .. math::

        V_t &= \alpha V_{t-1} + (1-\alpha)\, g_t \odot g_t \qquad (V_1 = g_1 \odot g_1) \\
        G_t &= 1 \oslash (\epsilon + \sqrt{V_t}) \\
        \theta_{t+1} &= \theta_t - h\, G_t \odot N g_t + \sqrt{2 h T\, G_t} \odot \xi_t ,

    the Euler–Maruyama step of :math:`d\theta = -G\nabla U\,dt + \sqrt{2TG}\,dW`, whose
    stationary distribution is :math:`\exp(-U/T)` for any constant positive diagonal :math:`G`.
    With ``precondition=False``, :math:`G = 1` and this is SGLD:
    :math:`\theta_{t+1} = \theta_t - hN g_t + \sqrt{2hT}\,\xi_t`. ``lr`` is the Langevin time
    step :math:`h`; it is :math:`\epsilon/2` in Welling & Teh's and Li et al.'s notation (drift
    :math:`\frac{\epsilon}{2}\nabla\log p`, noise variance :math:`\epsilon`). So
    ``lr * num_data`` is what an SGD learning rate on the mean loss would be, and for pSGLD
    ``lr * num_data`` plays the role of RMSprop's learning rate. :math:`V` is averaged over the
    per-data-point gradient :math:`g`, as in Li et al.; it starts at the first step's
    :math:`g \odot g` (not at 0, which would make the first steps :math:`1/\epsilon` long).

    **The correction term** :math:`\Gamma_i = \sum_j \partial G_{ij}/\partial\theta_j` **is
    dropped**, as in Li et al.'s practical algorithm. It is not even defined here: :math:`G_t`
    depends on the history of gradients, not on :math:`\theta_t` alone, and while it adapts the
    chain is not exactly invariant for :math:`\pi_T` (Li et al. bound the bias; it shrinks as
    :math:`\alpha \to 1`). The bias is not small when :math:`V` follows the chain faster than the
    chain mixes: :math:`G \propto 1/|g|` is then larger near the mode, and for a diffusion
    :math:`G(\theta)` without :math:`\Gamma` the stationary density is
    :math:`\propto \exp(-U/T)/G`. On the Gaussian posterior of
    ``tests/unit/test_sgmcmc.py`` (full batch), an adapting :math:`G` gave variances 50 %
    (:math:`\alpha = 0.99`) and 85 % (:math:`\alpha = 0.9`) too large. Once :math:`G` is
    constant :math:`\Gamma = 0` exactly and the only errors left are the :math:`O(h)`
    discretisation and gradient-noise errors. So adapt during burn-in and then freeze:
    ``adapt_steps=K`` stops updating :math:`V` after ``K`` steps of each parameter, and
    :meth:`freeze_preconditioner` freezes it at once (saved in the optimiser's state dict). The
    default (never frozen) is Li et al.'s sampler.

    Args:
        params: parameters or parameter groups, as for any optimiser. A group may override
            any setting below except ``generator``.
        lr: the time step :math:`h` (> 0).
        num_data: :math:`N`, the number of training data points the loss is a mean over.
        temperature: :math:`T \ge 0`; samples follow :math:`p(\theta|D)^{1/T}`.
        alpha: RMSprop decay rate of :math:`V`, in [0, 1).
        eps: :math:`\epsilon > 0` in :math:`G = 1/(\epsilon + \sqrt{V})`; bounds :math:`G`
            by :math:`1/\epsilon`.
        precondition: ``False`` for plain SGLD (:math:`G = 1`; ``alpha``, ``eps`` and
            ``adapt_steps`` unused).
        adapt_steps: freeze :math:`V` after this many steps (``None``: never).
        prior_precision: :math:`\lambda \ge 0`: adds a :math:`N(0, \lambda^{-1} I)` prior,
            i.e. :math:`\lambda\theta` to :math:`\nabla U` (0: the loss holds the prior, if any).
        generator: the source of the noise (``None``: torch's global generator).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        num_data: int,
        temperature: float = 1.0,
        alpha: float = 0.99,
        eps: float = 1e-5,
        *,
        precondition: bool = True,
        adapt_steps: int | None = None,
        prior_precision: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        defaults = dict(
            lr=lr, num_data=num_data, temperature=temperature, alpha=alpha, eps=eps, precondition=precondition,
            adapt_steps=adapt_steps, prior_precision=prior_precision, frozen=False,
        )  # fmt: skip
        super().__init__(params, defaults, generator)

    def _check(self, group: dict[str, Any]) -> None:
        super()._check(group)
        if not 0 <= _number(group, "alpha") < 1:
            raise ValueError(f"alpha must be in [0, 1) (RMSprop's decay rate), got {group['alpha']!r}")
        if _number(group, "eps") <= 0:
            raise ValueError(f"eps must be > 0 (it bounds the preconditioner by 1/eps), got {group['eps']!r}")
        steps = group["adapt_steps"]
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1):
            raise ValueError(f"adapt_steps must be None or an integer >= 1, got {steps!r}")

    def freeze_preconditioner(self) -> None:
        """Stop adapting :math:`G` now (e.g. at the end of burn-in): the chain is then exactly Langevin."""
        for group in self.param_groups:
            group["frozen"] = True

    def preconditioner(self, p: Tensor) -> Tensor | None:
        """The current :math:`G` of parameter ``p`` (``None`` before its first step or without preconditioning)."""
        for group in self.param_groups:
            if any(q is p for q in group["params"]):
                if not group["precondition"] or "square_avg" not in self.state[p]:
                    return None
                return 1.0 / (group["eps"] + self.state[p]["square_avg"].sqrt())
        raise KeyError("the parameter is not optimised by this sampler")

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        """One pSGLD step (see the class docstring); ``closure`` re-evaluates the loss, as for any optimiser."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            h, n, temperature = group["lr"], group["num_data"], group["temperature"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = self._gradient(p, group)
                state = self.state[p]
                state["step"] = state.get("step", 0) + 1
                if group["precondition"]:
                    limit = group["adapt_steps"]
                    adapting = not group["frozen"] and (limit is None or state["step"] <= limit)
                    if "square_avg" not in state:
                        state["square_avg"] = g * g
                    elif adapting:
                        state["square_avg"].mul_(group["alpha"]).addcmul_(g, g, value=1 - group["alpha"])
                    precond = 1.0 / (group["eps"] + state["square_avg"].sqrt())
                    p.addcmul_(precond, g, value=-h * n)
                    if temperature > 0:
                        p.addcmul_((2 * h * temperature * precond).sqrt(), self._noise(p))
                else:
                    p.add_(g, alpha=-h * n)
                    if temperature > 0:
                        p.add_(self._noise(p), alpha=math.sqrt(2 * h * temperature))
        return loss


class SGHMC(_SGMCMC):
    r"""Stochastic-gradient Hamiltonian Monte Carlo (Chen, Fox & Guestrin 2014, their eq. 15).

    With :math:`g_t = \nabla L(\theta_t)` (mean per data point), :math:`\eta` = ``lr``,
    :math:`a` = ``friction``, :math:`N` = ``num_data``, :math:`T` = ``temperature`` and
    :math:`\xi_t \sim N(0, I)`, one step is

    .. math::

        v_{t+1} &= (1 - a)\, v_t - \eta N g_t + \sqrt{2 a \eta T}\,\xi_t \\
        \theta_{t+1} &= \theta_t + v_{t+1}, \qquad v_0 = 0,

    i.e. SGD with momentum :math:`1 - a` and learning rate :math:`\eta N`, plus noise. It is
    the discretisation, with time step :math:`h = \sqrt{\eta}`, of the Langevin dynamics with
    unit mass and friction coefficient :math:`C = a/h`,
    :math:`d\theta = p\,dt`, :math:`dp = -\nabla U\,dt - Cp\,dt + \sqrt{2CT}\,dW`, with
    :math:`v = hp`; its stationary distribution is
    :math:`\exp(-U(\theta)/T) \times N(v; 0, \eta T)`. Chen et al.'s estimate
    :math:`\hat\beta` of the gradient noise is taken as 0 (their recommendation for small
    :math:`\eta`); the gradient noise then adds an :math:`O(\eta)` error, like the
    discretisation. The friction sets how fast the momentum forgets: each mode of curvature
    :math:`k` (of :math:`U`) mixes fastest near critical damping, :math:`a \approx 2\sqrt{\eta k}`;
    Chen et al. use :math:`a` between 0.01 and 0.1.

    Args:
        params: parameters or parameter groups, as for any optimiser.
        lr: :math:`\eta > 0`, the squared time step.
        num_data: :math:`N`, the number of training data points the loss is a mean over.
        temperature: :math:`T \ge 0`; samples follow :math:`p(\theta|D)^{1/T}`.
        friction: :math:`a` in (0, 1]: the fraction of the momentum lost per step.
        prior_precision: :math:`\lambda \ge 0`: adds :math:`\lambda\theta` to :math:`\nabla U`.
        generator: the source of the noise (``None``: torch's global generator).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        num_data: int,
        temperature: float = 1.0,
        friction: float = 0.05,
        *,
        prior_precision: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        defaults = dict(
            lr=lr, num_data=num_data, temperature=temperature, friction=friction, prior_precision=prior_precision
        )
        super().__init__(params, defaults, generator)

    def _check(self, group: dict[str, Any]) -> None:
        super()._check(group)
        if not 0 < _number(group, "friction") <= 1:
            raise ValueError(
                f"friction must be in (0, 1] (the fraction of momentum lost per step), got {group['friction']!r}"
            )

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        """One SGHMC step (see the class docstring); ``closure`` re-evaluates the loss, as for any optimiser."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            eta, n, temperature, a = group["lr"], group["num_data"], group["temperature"], group["friction"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = self._gradient(p, group)
                state = self.state[p]
                if "momentum" not in state:
                    state["momentum"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                v = state["momentum"]
                v.mul_(1 - a).add_(g, alpha=-eta * n)
                if temperature > 0:
                    v.add_(self._noise(p), alpha=math.sqrt(2 * a * eta * temperature))
                p.add_(v)
        return loss


def keep_sample(step: int, burn_in: int, thin: int = 1) -> bool:
    """Whether the state after ``step`` sampler steps (counted from 1) is kept.

    The first ``burn_in`` steps are discarded; after them every ``thin``-th state is kept:
    steps ``burn_in + thin``, ``burn_in + 2 * thin``, ...
    """
    return step > burn_in and (step - burn_in) % thin == 0


class SampleCollector:
    """Burn-in, thinning and storage of the kept states of one or several chains.

    Call :meth:`collect` after every sampler step with the number of steps taken so far in that
    chain; it stores a detached clone of the module's ``state_dict`` (weights and buffers) when
    :func:`keep_sample` says so. The kept states are the committee (:meth:`committee`).

    >>> collector = SampleCollector(burn_in=1000, thin=100)
    >>> for step in range(1, 3001):  # doctest: +SKIP
    ...     sampler.zero_grad(); loss_fn(model).backward(); sampler.step()
    ...     collector.collect(step, model, chain=0)

    Args:
        burn_in: the number of steps of each chain to discard (>= 0).
        thin: keep every ``thin``-th state after burn-in (>= 1).
        device: where the kept copies live (``None``: where the weights are); ``"cpu"`` keeps
            GPU memory free for long chains.
    """

    def __init__(self, burn_in: int = 0, thin: int = 1, device: torch.device | str | None = None) -> None:
        if isinstance(burn_in, bool) or not isinstance(burn_in, numbers.Integral) or burn_in < 0:
            raise ValueError(f"burn_in must be an integer >= 0, got {burn_in!r}")
        if isinstance(thin, bool) or not isinstance(thin, numbers.Integral) or thin < 1:
            raise ValueError(f"thin must be an integer >= 1, got {thin!r}")
        self.burn_in = int(burn_in)
        self.thin = int(thin)
        self.device = device
        self.samples: list[dict[str, Tensor]] = []
        self.steps: list[int] = []
        self.chains: list[int] = []

    def __len__(self) -> int:
        return len(self.samples)

    def keep(self, step: int) -> bool:
        """Whether the state after ``step`` steps is kept (:func:`keep_sample`)."""
        return keep_sample(step, self.burn_in, self.thin)

    def collect(self, step: int, source: nn.Module | Mapping[str, Tensor], chain: int = 0) -> bool:
        """Store a copy of ``source`` (a module or a state dict) if step ``step`` is kept; say whether it was."""
        if not self.keep(step):
            return False
        state = source.state_dict() if isinstance(source, nn.Module) else source
        self.samples.append({k: v.detach().to(self.device, copy=True) for k, v in state.items()})
        self.steps.append(int(step))
        self.chains.append(int(chain))
        return True

    def committee(self, chain: int | None = None) -> list[dict[str, Tensor]]:
        """The kept state dicts (of one chain, or of all in the order kept), to load into copies of the model."""
        return [s for s, c in zip(self.samples, self.chains) if chain is None or c == chain]

    def stacked(self, chain: int | None = None) -> dict[str, Tensor]:
        """Each entry of the kept state dicts stacked along a new first dimension (samples)."""
        members = self.committee(chain)
        if not members:
            raise ValueError("no samples kept yet" if chain is None else f"no samples kept for chain {chain}")
        return {k: torch.stack([m[k] for m in members]) for k in members[0]}

    def state_dict(self) -> dict[str, Any]:
        """Plain tensors, lists and numbers (loads with ``torch.load(weights_only=True)``)."""
        return {
            "burn_in": self.burn_in, "thin": self.thin,
            "samples": list(self.samples), "steps": list(self.steps), "chains": list(self.chains),
        }  # fmt: skip

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.burn_in, self.thin = int(state["burn_in"]), int(state["thin"])
        self.samples, self.steps, self.chains = list(state["samples"]), list(state["steps"]), list(state["chains"])
