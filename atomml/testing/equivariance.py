"""Equivariance of any function of tensors, for checking layers one at a time.

``check_equivariant(fn, inputs, reps_in, reps_out)`` rotates (and reflects) the inputs, calls
``fn`` and compares with the outputs rotated the same way, as e3nn's ``assert_equivariant``
does for irreps. Each input and output declares how it transforms (a representation):

- :func:`scalar`: invariant (distances, radial bases, scalar features);
- :func:`vector`: a polar vector along one dimension, x -> R x (edge vectors, forces);
- :func:`axial`: a pseudovector, x -> det(R) R x (angular momenta, cross products);
- :func:`rank2`: a Cartesian rank-2 tensor along two dimensions, X -> R X R^T; with
  ``odd_antisymmetric=True`` its antisymmetric part is a pseudotensor (det(R) R A R^T), as in
  TensorNet, whose antisymmetric part comes from a polar vector;
- :func:`irreps`: e3nn irreps (``"8x0e + 4x1o + 2x2e"``) along one dimension, x -> D(R) x;
- :func:`custom`: any ``transform(x, R)``.

A layer that breaks equivariance shows here, with the output that broke and by how much, before
it disappears into an invariant energy. Works without pytest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .structures import random_rotation

Transform = Callable[[Tensor, Tensor], Tensor]
# relative tolerance on the largest output entry, per dtype
EQUIVARIANCE_RTOL = {torch.float64: 1e-10, torch.float32: 2e-5}


class Rep:
    """How a tensor transforms under an orthogonal 3x3 matrix R (see the module docstring)."""

    def __init__(self, name: str, transform: Transform):
        self.name = name
        self._transform = transform

    def __call__(self, x: Tensor, rotation: Tensor) -> Tensor:
        return self._transform(x, rotation.to(dtype=x.dtype, device=x.device))

    def __repr__(self) -> str:
        return self.name


def scalar() -> Rep:
    return Rep("scalar", lambda x, r: x)


def _along(dim: int, apply: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    def transform(x: Tensor) -> Tensor:
        return torch.movedim(apply(torch.movedim(x, dim, -1)), -1, dim)

    return transform


def vector(dim: int = -1) -> Rep:
    return Rep(f"vector(dim={dim})", lambda x, r: _along(dim, lambda y: y @ r.T)(x))


def axial(dim: int = -1) -> Rep:
    return Rep(f"axial(dim={dim})", lambda x, r: _along(dim, lambda y: torch.linalg.det(r) * (y @ r.T))(x))


def rank2(dims: tuple[int, int] = (-2, -1), odd_antisymmetric: bool = False) -> Rep:
    def transform(x: Tensor, r: Tensor) -> Tensor:
        m = torch.movedim(x, dims, (-2, -1))
        if odd_antisymmetric:
            sym, anti = 0.5 * (m + m.transpose(-1, -2)), 0.5 * (m - m.transpose(-1, -2))
            out = r @ sym @ r.T + torch.linalg.det(r) * (r @ anti @ r.T)
        else:
            out = r @ m @ r.T
        return torch.movedim(out, (-2, -1), dims)

    return Rep(f"rank2(dims={dims}, odd_antisymmetric={odd_antisymmetric})", transform)


def irreps(spec: str, dim: int = -1) -> Rep:
    """e3nn irreps along ``dim``, in e3nn's basis (apply it to e3nn's functions)."""
    from e3nn import o3

    ir = o3.Irreps(spec)

    def transform(x: Tensor, r: Tensor) -> Tensor:
        d = _irreps_matrix(ir, r.double()).to(x.dtype)
        return _along(dim, lambda y: y @ d.T)(x)

    return Rep(f"irreps({spec!r}, dim={dim})", transform)


def _irreps_matrix(ir: Any, r: Tensor) -> Tensor:
    """The block-diagonal D(R) of e3nn irreps, accurate to float64.

    e3nn's own ``D_from_matrix`` is good to ~4e-7 (float32 constants inside), too coarse for a
    float64 check. Each block is instead fitted from e3nn's spherical harmonics, which define
    its basis: Y_l(R x) = D_l(R) Y_l(x) on a few random points, for the proper part of R, times
    the irrep's parity under inversion.
    """
    from e3nn import o3

    det = float(torch.linalg.det(r))
    proper = r * det
    points = torch.tensor(np.random.default_rng(0).normal(size=(64, 3)), dtype=torch.float64)
    blocks = []
    for mul, (l, parity) in ir:
        y = o3.spherical_harmonics(l, points, normalize=True)
        d = torch.linalg.lstsq(y, o3.spherical_harmonics(l, points @ proper.T, normalize=True)).solution.T
        blocks += [d * (parity if det < 0 else 1)] * mul
    return torch.block_diag(*blocks)


def custom(transform: Transform, name: str = "custom") -> Rep:
    return Rep(name, transform)


def _as_tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def check_equivariant(
    fn: Callable[..., Any],
    inputs: Sequence[Tensor],
    reps_in: Sequence[Rep],
    reps_out: Sequence[Rep] | Rep,
    *,
    rotations: int = 3,
    reflections: bool = True,
    seed: int = 0,
    rtol: float | None = None,
) -> None:
    """Assert fn(g·inputs) = g·fn(inputs) for random rotations g (and rotations times -1).

    ``fn`` returns one tensor or a tuple; ``reps_out`` has one representation per output.
    The tolerance is relative to the largest entry of each output (float32 2e-5, float64 1e-10).
    Raises AssertionError naming the output, the transformation and the error.
    """
    inputs, reps_in, reps_out = tuple(inputs), tuple(reps_in), _as_tuple(reps_out)
    if len(inputs) != len(reps_in):
        raise ValueError(f"{len(inputs)} inputs but {len(reps_in)} input representations")
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        reference = _as_tuple(fn(*inputs))
        if len(reference) != len(reps_out):
            raise ValueError(f"fn returned {len(reference)} outputs but {len(reps_out)} output representations were given")
        for k in range(rotations):
            for reflect in (False, True) if reflections else (False,):
                rotation = torch.tensor(random_rotation(rng, reflect=reflect), dtype=torch.float64)
                moved = _as_tuple(fn(*(rep(x, rotation) for rep, x in zip(reps_in, inputs))))
                for n, (rep, ref, out) in enumerate(zip(reps_out, reference, moved)):
                    expected = rep(ref, rotation)
                    tol = (rtol or EQUIVARIANCE_RTOL.get(ref.dtype, 1e-5)) * max(1.0, float(ref.abs().max()))
                    error = float((out - expected).abs().max())
                    if not error <= tol:
                        kind = "rotation x inversion" if reflect else "rotation"
                        raise AssertionError(
                            f"output {n} ({rep}) is not equivariant under a random {kind} (trial {k}): "
                            f"largest error {error:.3g}, tolerance {tol:.3g}"
                        )
