"""SAFT loss terms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from saft_core.errors import ShapeMismatchError
from saft_core.losses import (
    degradation_loss,
    den_loss,
    haze_loss,
    hessian_loss,
    intensity_loss,
    rot180,
    rot180_inv,
    rotation_loss,
    wsf_loss,
)


def field(t: int, h: int, w: int, fn) -> torch.Tensor:  # noqa: ANN001
    """fn(t, y, x) sampled on a (1, T, H, W) grid, float64."""
    tt, yy, xx = torch.meshgrid(
        *(torch.arange(n, dtype=torch.float64) for n in (t, h, w)), indexing="ij"
    )
    return fn(tt, yy, xx)[None]


def test_rot180_round_trip() -> None:
    x = torch.rand(2, 3, 5, 7)
    r = rot180(x)
    assert not torch.equal(r, x)
    assert torch.equal(rot180_inv(r), x)
    assert np.array_equal(r.numpy(), np.rot90(x.numpy(), k=2, axes=(-2, -1)))


def test_hessian_of_linear_ramp_is_zero() -> None:
    y = field(5, 9, 11, lambda t, yy, xx: 0.3 * xx - 1.7 * yy + 2.5 * t + 4.0)
    assert float(hessian_loss(y)) == pytest.approx(0.0, abs=1e-12)
    assert float(hessian_loss(y.float())) < 1e-5


@pytest.mark.parametrize("lt", [0.5, 2.0])
def test_hessian_weights_of_each_term(lt: float) -> None:
    st = math.sqrt(lt)
    cases = [  # field, expected loss: one second derivative at a time
        (lambda t, yy, xx: xx**2, 2.0),  # d_xx = 2
        (lambda t, yy, xx: 3 * yy**2, 6.0),  # d_yy = 6
        (lambda t, yy, xx: t**2, lt * 2.0),  # d_tt = 2, weight lt
        (lambda t, yy, xx: xx * yy, 2.0),  # d_xy = 1, weight 2
        (lambda t, yy, xx: xx * t, 2 * st),  # d_xt = 1, weight 2 sqrt(lt)
        (lambda t, yy, xx: -yy * t, 2 * st),  # d_yt = -1, weight 2 sqrt(lt)
    ]
    for fn, expected in cases:
        assert float(hessian_loss(field(4, 6, 7, fn), lt=lt)) == pytest.approx(expected)


def test_hessian_is_scale_free_and_positive() -> None:
    fn = lambda t, yy, xx: 0.5 * xx**2 + yy * xx  # noqa: E731
    small, large = field(3, 8, 8, fn), field(7, 40, 64, fn)
    assert float(hessian_loss(small)) == pytest.approx(float(hessian_loss(large)))
    assert float(hessian_loss(small)) == pytest.approx(1.0 + 2.0)
    noisy = torch.rand(1, 5, 16, 16)
    assert float(hessian_loss(noisy)) > 0.1
    with pytest.raises(ShapeMismatchError):
        hessian_loss(torch.rand(1, 2, 8, 8))
    with pytest.raises(ShapeMismatchError):
        hessian_loss(torch.rand(5, 8, 8))


def test_hessian_gradient_flows() -> None:
    y = torch.rand(1, 3, 8, 8, requires_grad=True)
    hessian_loss(y).backward()
    assert y.grad is not None and y.grad.abs().sum() > 0


def test_simple_losses() -> None:
    a = torch.zeros(1, 1, 4, 4)
    b = torch.full((1, 1, 4, 4), 0.25)
    b[0, 0, 0, 0] = 4.25
    assert float(degradation_loss(a, b)) == pytest.approx((15 * 0.25 + 4.25) / 16)
    assert float(rotation_loss(b, a)) == pytest.approx((15 * 0.25 + 4.25) / 16)
    assert float(intensity_loss(b, a)) == pytest.approx(0.5)
    assert float(intensity_loss(a, b)) == pytest.approx(0.5)
    assert float(intensity_loss(torch.ones(2, 1, 8, 8), torch.ones(1, 1, 3, 3))) == 0.0
    with pytest.raises(ShapeMismatchError):
        degradation_loss(a, torch.zeros(1, 1, 4, 5))


def test_den_loss_never_trains_the_sr_side() -> None:
    degraded = torch.full((1, 1, 4, 4), 1.0, requires_grad=True)
    den_out = torch.full((1, 1, 4, 4), 0.5, requires_grad=True)
    x = torch.zeros(1, 1, 4, 4)
    loss = den_loss(degraded, den_out, x)
    assert float(loss.detach()) == pytest.approx(0.5 + 0.5)
    loss.backward()
    assert degraded.grad is None
    assert den_out.grad is not None and torch.allclose(den_out.grad, torch.zeros(1, 1, 4, 4))
    # (den_out sits halfway: the two L1 pulls cancel; off-centre they do not)
    den_out2 = torch.full((1, 1, 4, 4), 0.2, requires_grad=True)
    den_loss(degraded, den_out2, x).backward()
    assert float(den_out2.grad.sum()) == pytest.approx(0.0)
    den_out3 = torch.full((1, 1, 4, 4), 1.5, requires_grad=True)
    den_loss(degraded, den_out3, x).backward()
    assert float(den_out3.grad.sum()) == pytest.approx(2.0)


def test_wsf_loss_is_peak_normalised() -> None:
    gen = torch.Generator().manual_seed(0)
    smlm = torch.rand(32, 32, generator=gen)
    assert float(wsf_loss(7.5 * smlm, smlm)) == pytest.approx(0.0, abs=1e-7)
    other = torch.rand(32, 32, generator=gen)
    assert float(wsf_loss(other, smlm)) > 0.1
    assert float(wsf_loss(3 * other, smlm)) == pytest.approx(float(wsf_loss(other, smlm)))
    assert torch.isfinite(wsf_loss(torch.zeros(4, 4), torch.zeros(4, 4)))


def test_haze_loss_is_relative_intensity_in_empty_pixels():
    y = torch.zeros(1, 1, 4, 4)
    y[..., :2, :] = 2.0  # structure in the top half
    y[..., 2:, :] = 0.5  # haze in the bottom half
    empty = torch.zeros_like(y)
    empty[..., 2:, :] = 1.0
    y0 = torch.full_like(y, 1.0)
    assert float(haze_loss(y, empty, y0)) == pytest.approx(0.25)  # mean(y*empty) / mean(y0)
    assert float(haze_loss(y * 3, empty, y0 * 3)) == pytest.approx(0.25)  # unitless
    with pytest.raises(ShapeMismatchError):
        haze_loss(y, empty[..., :2, :], y0)
