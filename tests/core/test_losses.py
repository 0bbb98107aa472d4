"""SAFT loss terms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from saft_core.errors import ShapeMismatchError
from saft_core.losses import (
    HESSIAN_LT,
    HESSIAN_WEIGHT,
    Objective,
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


def test_wsf_loss_normalises_by_the_given_peak() -> None:
    gen = torch.Generator().manual_seed(0)
    smlm = torch.rand(32, 32, generator=gen)
    smlm[:8, :8] *= 0.5  # a dim tile: its own max is about half the whole image's
    smlm = smlm / smlm.max()
    whole = 7.5 * smlm
    # A tile of the frame sum, normalised by the peak of the whole sum: the tile's own max
    # (here below the whole peak) must not be used.
    tile = (slice(0, 8), slice(0, 8))
    assert float(wsf_loss(whole[tile], smlm[tile], whole.max())) == pytest.approx(0.0, abs=1e-7)
    tile_peak = whole[tile].max()
    expected = (whole[tile] / tile_peak - smlm[tile]).abs().mean()
    assert float(wsf_loss(whole[tile], smlm[tile], tile_peak)) == pytest.approx(float(expected))
    assert float(expected) > 0.1
    other = torch.rand(32, 32, generator=gen)
    assert float(wsf_loss(other, smlm, other.max())) > 0.1
    assert torch.isfinite(wsf_loss(torch.zeros(4, 4), torch.zeros(4, 4), torch.tensor(0.0)))
    with pytest.raises(ShapeMismatchError):
        wsf_loss(other[:4], smlm, other.max())


def _saft_inputs(n: int = 3) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    y = torch.rand(n, 1, 8, 8, generator=gen)
    target = torch.rand(n, 1, 2, 2, generator=gen)
    return {
        "y": y,
        "degraded": torch.rand(n, 1, 2, 2, generator=gen),
        "target": target,
        "y0": torch.rand(n, 1, 8, 8, generator=gen),
        "y_rot": torch.rand(n, 1, 8, 8, generator=gen),
        "empty": (torch.rand(n, 1, 8, 8, generator=gen) > 0.5).float(),
    }


def test_objective_applies_each_declared_weight() -> None:
    a = _saft_inputs()
    y, y0 = a["y"], a["y0"]
    objective = Objective(
        continuity_level=2.0, sparse_level=0.3, consistency_level=0.7, haze_level=0.4
    )
    terms = objective.saft_terms(
        y, a["degraded"], a["target"], y0=y0, y_rot=a["y_rot"], empty=a["empty"]
    )
    assert HESSIAN_WEIGHT == 0.025 and HESSIAN_LT == 0.5
    expected = {
        "degradation": degradation_loss(a["degraded"], a["target"]),
        "hessian": 0.025 * 2.0 * hessian_loss(y[:, 0][None], lt=0.5),
        "sparse": 0.3 * intensity_loss(y, y0),
        "rotation": 0.7 * rotation_loss(y, a["y_rot"]),
        "haze": 0.4 * haze_loss(y, a["empty"], y0),
    }
    assert terms.keys() == expected.keys()
    for name, value in expected.items():
        assert float(terms[name]) == pytest.approx(float(value), rel=1e-6), name
    assert float(Objective.total(terms)) == pytest.approx(sum(float(v) for v in expected.values()))
    # Doubling a level doubles exactly its term.
    doubled = Objective(
        continuity_level=2.0, sparse_level=0.6, consistency_level=0.7, haze_level=0.4
    ).saft_terms(y, a["degraded"], a["target"], y0=y0, y_rot=a["y_rot"], empty=a["empty"])
    assert float(doubled["sparse"]) == pytest.approx(2 * float(terms["sparse"]))
    assert float(doubled["rotation"]) == pytest.approx(float(terms["rotation"]))


def test_objective_leaves_out_switched_off_terms() -> None:
    a = _saft_inputs(n=2)  # fewer than 3 frames: no Hessian even when asked for
    terms = Objective(continuity_level=1.0).saft_terms(
        a["y"], a["degraded"], a["target"], y0=a["y0"], y_rot=a["y_rot"], empty=None
    )
    assert set(terms) == {"degradation"}
    b = _saft_inputs(n=3)
    terms = Objective().saft_terms(
        b["y"], b["degraded"], b["target"], y0=b["y0"], y_rot=b["y_rot"], empty=None
    )
    assert set(terms) == {"degradation"}


def test_objective_wsf_term_is_the_wsf_loss() -> None:
    gen = torch.Generator().manual_seed(2)
    frame_sum, smlm = torch.rand(8, 8, generator=gen), torch.rand(8, 8, generator=gen)
    peak = torch.tensor(3.0)
    terms = Objective(continuity_level=5.0).wsf_terms(frame_sum, smlm, peak)
    assert set(terms) == {"wsf"}
    assert torch.equal(Objective.total(terms), wsf_loss(frame_sum, smlm, peak))


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
