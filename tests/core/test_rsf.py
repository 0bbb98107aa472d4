"""The resolution-scaling function: geometry of a degraded spot, mean matching, gradients.

Expected spot variance on the LR grid (per axis, LR pixels^2), for scale s:
  AvgPool_s groups the SR pixels of each LR pixel at its centre. An SR pixel sits at offset
  (k + 1/2)/s - 1/2, k = 0..s-1, from that centre: a discrete uniform offset of variance
  (s^2 - 1) / (12 s^2), uncorrelated with position for a smooth spot (Sheppard), so grouping
  ADDS it: var_pool = var_SR / s^2 + (1 - 1/s^2) / 12 (the 1/12 of a continuous box as s grows).
  The blur is a discrete convolution with a normalised kernel: variances add exactly,
  var_LR = var_pool + var_kernel, and var_kernel ~ sigma_b^2 for a kernel wide enough.
"""

from __future__ import annotations

import math

import pytest
import torch

from saft_core.errors import InvalidParameterError, ShapeMismatchError
from saft_core.rsf import (
    degrade,
    degrade_over_background,
    degrade_structure,
    degrade_with_background,
    fit_gain_offset,
    gaussian_kernel,
)

S = 4


def spot(size: int, center: tuple[float, float], sigma: float) -> torch.Tensor:
    """A Gaussian spot on the SR grid, (1, 1, size, size), float64; coordinates in pixels."""
    r = torch.arange(size, dtype=torch.float64)
    gy = torch.exp(-((r - center[0]) ** 2) / (2 * sigma**2))
    gx = torch.exp(-((r - center[1]) ** 2) / (2 * sigma**2))
    return torch.outer(gy, gx)[None, None]


def moments(img: torch.Tensor) -> tuple[float, float, float, float, float]:
    """Total, centroid (row, col) and variance (row, col) of a (1, 1, H, W) image."""
    a = img[0, 0]
    total = a.sum()
    r = torch.arange(a.shape[0], dtype=a.dtype)
    c = torch.arange(a.shape[1], dtype=a.dtype)
    py, px = a.sum(1) / total, a.sum(0) / total
    my, mx = (py * r).sum(), (px * c).sum()
    vy, vx = (py * (r - my) ** 2).sum(), (px * (c - mx) ** 2).sum()
    return float(total), float(my), float(mx), float(vy), float(vx)


def test_gaussian_kernel() -> None:
    k = gaussian_kernel(1.1, 7)
    assert k.shape == (1, 1, 7, 7) and k.dtype == torch.get_default_dtype()
    assert float(k.sum()) == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(k, k.transpose(-1, -2)) and torch.allclose(k, torch.flip(k, (-1,)))
    assert int(k.flatten().argmax()) == 24  # the centre
    wide = gaussian_kernel(3.0, 7)
    assert float(wide[0, 0, 3, 3]) < float(k[0, 0, 3, 3])  # wider PSF -> lower peak
    for sigma, ksize in [(0.0, 5), (-1.0, 5), (float("nan"), 5), (1.0, 4), (1.0, 0)]:
        with pytest.raises(InvalidParameterError):
            gaussian_kernel(sigma, ksize)


@pytest.mark.parametrize("sigma_b", [0.8, 1.1])
def test_degraded_spot_geometry(sigma_b: float) -> None:
    s_sr, ksize = 4.0, 13  # SR spot of 1 LR pixel, kernel radius 6 >= 5.4 sigma_b
    center = (81.3, 77.9)  # off the pixel grid on purpose
    y = spot(40 * S, center, s_sr)
    lr = degrade(y, S, sigma_b, ksize)
    assert lr.shape == (1, 1, 40, 40)
    tot_sr, cy_sr, cx_sr, vy_sr, vx_sr = moments(y)
    tot, cy, cx, vy, vx = moments(lr)
    # Intensity: the RSF keeps the mean, so the LR total is the SR total / s^2.
    assert tot * S**2 == pytest.approx(tot_sr, rel=1e-9)
    # Centroid stays put: LR pixel n has its centre at SR coordinate s*n + (s-1)/2.
    assert cy == pytest.approx((cy_sr - (S - 1) / 2) / S, abs=1e-6)
    assert cx == pytest.approx((cx_sr - (S - 1) / 2) / S, abs=1e-6)
    kern = gaussian_kernel(sigma_b, ksize, dtype=torch.float64)[0, 0].sum(0)
    offsets = torch.arange(ksize, dtype=torch.float64) - ksize // 2
    var_kernel = float((kern * offsets**2).sum())
    group = (1 - 1 / S**2) / 12
    for v, v_sr in [(vy, vy_sr), (vx, vx_sr)]:
        assert v == pytest.approx(v_sr / S**2 + group + var_kernel, abs=1e-6)
        # the continuous approximation (s_sr/s)^2 + (1 - 1/s^2)/12 + sigma_b^2
        assert v == pytest.approx((s_sr / S) ** 2 + group + sigma_b**2, rel=2e-3)
        # a plain 1/12 (continuous box) would be measurably off
        assert abs(v - ((s_sr / S) ** 2 + 1 / 12 + var_kernel)) > 4e-3


def test_flat_image_stays_flat_at_borders() -> None:
    y = torch.full((2, 1, 24, 32), 0.37)
    lr = degrade(y, S, 1.5, 7)
    assert lr.shape == (2, 1, 6, 8)
    assert torch.allclose(lr, torch.full_like(lr, 0.37), atol=1e-6)
    # frames smaller than the kernel radius still work (replicate padding)
    tiny = degrade(torch.full((1, 1, 8, 8), 2.0), S, 1.0, 9)
    assert torch.allclose(tiny, torch.full_like(tiny, 2.0), atol=1e-6)


def test_mean_matching() -> None:
    gen = torch.Generator().manual_seed(0)
    y = torch.rand(3, 1, 32, 48, generator=gen)
    ref = (
        torch.rand(3, 1, 8, 12, generator=gen) * torch.tensor([1.0, 5.0, 0.1])[:, None, None, None]
    )
    d = degrade(y, S, 1.1, 5, reference=ref)
    assert torch.allclose(d.mean(dim=(1, 2, 3)), ref.mean(dim=(1, 2, 3)), rtol=1e-5)
    # the shape is that of the plain RSF, only scaled
    plain = degrade(y, S, 1.1, 5)
    ratio = d / plain
    assert torch.allclose(ratio, ratio[:, :, :1, :1].expand_as(ratio), rtol=1e-5)
    # a dark SR image gives a finite result instead of a division by zero
    zero = degrade(torch.zeros(1, 1, 16, 16), S, 1.1, 5, reference=torch.rand(1, 1, 4, 4))
    assert torch.isfinite(zero).all()


def test_gradients_flow() -> None:
    gen = torch.Generator().manual_seed(1)
    y = torch.rand(2, 1, 16, 16, generator=gen, requires_grad=True)
    ref = torch.rand(2, 1, 4, 4, generator=gen)
    loss = (degrade(y, S, 1.1, 3, reference=ref) - ref).abs().mean()
    loss.backward()
    assert y.grad is not None and torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0
    yd = torch.rand(1, 1, 8, 8, dtype=torch.float64, generator=gen, requires_grad=True)
    refd = torch.rand(1, 1, 2, 2, dtype=torch.float64, generator=gen)
    assert torch.autograd.gradcheck(lambda t: degrade(t, S, 0.9, 3, reference=refd), (yd,))
    assert torch.autograd.gradcheck(lambda t: degrade_with_background(t, S, 0.9, 3, refd), (yd,))


def test_background_fit_recovers_gain_and_offset() -> None:
    gen = torch.Generator().manual_seed(2)
    y = torch.rand(2, 1, 32, 32, generator=gen, dtype=torch.float64)
    plain = degrade(y, S, 1.1, 5)
    ref = plain * torch.tensor([0.7, 2.0], dtype=torch.float64)[:, None, None, None] + 0.2
    fitted = degrade_with_background(y, S, 1.1, 5, ref)
    assert torch.allclose(fitted, ref, atol=1e-10)
    gain, offset = fit_gain_offset(plain, ref)
    assert gain.flatten().tolist() == pytest.approx([0.7, 2.0])
    assert offset.flatten().tolist() == pytest.approx([0.2, 0.2])
    # gain-only matching cannot explain a background: it leaves a residual
    assert (degrade(y, S, 1.1, 5, reference=ref) - ref).abs().max() > 1e-2
    # a flat prediction falls back to the reference mean
    small = ref[:1, :, :4, :4].float()
    flat = degrade_with_background(torch.ones(1, 1, 16, 16), S, 1.1, 5, small)
    assert torch.allclose(flat, small.mean().expand_as(flat))


def test_background_map_fit_recovers_gain_and_penalises_haze() -> None:
    gen = torch.Generator().manual_seed(3)
    y = torch.rand(2, 1, 32, 32, generator=gen, dtype=torch.float64)
    plain = degrade(y, S, 1.1, 5)
    bg = torch.linspace(0.1, 0.4, 8, dtype=torch.float64).expand(2, 1, 8, 8).contiguous()
    ref = plain * torch.tensor([0.5, 3.0], dtype=torch.float64)[:, None, None, None] + bg
    assert torch.allclose(degrade_over_background(y, S, 1.1, 5, ref, bg), ref, atol=1e-10)
    # haze added to the SR image is not absorbed (a free offset would absorb it)
    flat_bg = torch.full_like(bg, 0.2)
    flat_ref = plain * 2.0 + flat_bg
    hazy = y + 0.3
    assert (
        degrade_over_background(hazy, S, 1.1, 5, flat_ref, flat_bg) - flat_ref
    ).abs().mean() > 1e-2
    assert (degrade_with_background(hazy, S, 1.1, 5, flat_ref) - flat_ref).abs().max() < 1e-10
    yd = y.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: degrade_over_background(t, S, 0.9, 3, ref, bg), (yd,))
    with pytest.raises(ShapeMismatchError):
        degrade_over_background(y, S, 1.1, 5, ref, bg[..., :4])


def test_structure_fidelity_ignores_out_of_focus_light_but_not_structure() -> None:
    """Out-of-focus light (far wider than the PSF) in the reference is not asked of the SR
    image, while missing or misplaced structure still costs fidelity."""
    size = 128  # SR px: a 32 x 32 LR tile
    y = spot(size, (40, 50), 1.5) + spot(size, (90, 70), 1.5)  # two in-focus spots, SR grid
    plain = degrade(y, S, 1.0, 7)
    haze = degrade(spot(size, (64, 64), 40.0), S, 1.0, 7)  # light from another plane
    ref = 3.0 * plain + 0.5 * haze / haze.max() * plain.max()

    def mismatch(sr: torch.Tensor) -> float:
        return float((degrade_structure(sr, S, 1.0, 7, ref) - ref).abs().mean())

    base = mismatch(y)
    assert base < 0.06 * float(ref.mean())  # the haze costs the in-focus image (almost) nothing
    over_bg = (degrade_over_background(y, S, 1.0, 7, ref, torch.zeros_like(ref)) - ref).abs()
    assert float(over_bg.mean()) > 10 * base  # a fixed map would ask the SR to paint it
    assert mismatch(spot(size, (40, 50), 1.5)) > 2 * base  # a lost spot still costs
    assert mismatch(spot(size, (40, 70), 1.5) + spot(size, (90, 70), 1.5)) > 3 * base
    yd = y.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: degrade_structure(t, S, 1.0, 7, ref), (yd,))


def test_shape_errors() -> None:
    with pytest.raises(ShapeMismatchError, match="whole number"):
        degrade(torch.rand(1, 1, 30, 32), S, 1.0, 3)
    with pytest.raises(ShapeMismatchError, match="reference shape"):
        degrade(torch.rand(1, 1, 32, 32), S, 1.0, 3, reference=torch.rand(1, 1, 4, 4))
    with pytest.raises(ShapeMismatchError):
        degrade(torch.rand(32, 32), S, 1.0, 3)
    assert math.isfinite(float(degrade(torch.rand(1, 1, 8, 8), S, 1.0, 1).sum()))
