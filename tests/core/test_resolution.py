"""FRC resolution: calibrated on blurred white objects, and not fooled by noise-driven texture."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from saft_core.metrics import decorrelation_resolution
from saft_core.resolution import (
    ONE_IMAGE_CORRECTION,
    frc_curve,
    frc_resolution,
    single_image_frc_resolution,
    split_halves,
    stack_frc_resolution,
    threshold_curve,
)

SIDE = 256
SNR = 1000.0  # object variance / noise variance per pixel


def expected_frc_resolution(blur: float, snr: float = SNR) -> float:
    """1/7-threshold resolution (px) of a white object blurred by a Gaussian of ``blur`` px.

    Per frequency the FRC is S/(S+N) with S/N = snr * exp(-4 pi^2 blur^2 k^2); it crosses 1/7
    where S/N = 1/6, i.e. at k = sqrt(ln(6 snr)) / (2 pi blur).
    """
    return 2 * math.pi * blur / math.sqrt(math.log(6 * snr))


def halves(blur: float, seed: int = 0, snr: float = SNR):
    """(truth, half a, half b): one blurred white object, two independent unit-noise draws."""
    rng = np.random.default_rng(seed)
    truth = gaussian_filter(rng.standard_normal((SIDE, SIDE)) * math.sqrt(snr), blur, mode="wrap")
    a = truth + rng.standard_normal(truth.shape)
    b = truth + rng.standard_normal(truth.shape)
    return truth, a, b


@pytest.fixture(scope="module")
def measured():
    blurs = [1.5, 2.0, 3.0, 4.0, 6.0]
    return blurs, [frc_resolution(*halves(s)[1:]) for s in blurs]


def test_frc_matches_the_known_resolution_within_20_percent(measured):
    blurs, values = measured
    for s, v in zip(blurs, values, strict=True):
        assert v == pytest.approx(expected_frc_resolution(s), rel=0.2)


def test_frc_grows_monotonically_with_the_blur(measured):
    _, values = measured
    assert all(b > a for a, b in zip(values, values[1:], strict=False))
    half_bit = [frc_resolution(*halves(s)[1:], threshold="half-bit") for s in (2.0, 3.0, 4.0)]
    assert half_bit == sorted(half_bit)


def test_more_noise_reads_coarser():
    assert frc_resolution(*halves(3.0, snr=30.0)[1:]) > frc_resolution(*halves(3.0)[1:])


def test_curve_shape_and_limits():
    truth, a, b = halves(3.0)
    freqs, frc = frc_curve(a, b)
    assert freqs[0] == 0 and freqs[-1] <= 0.5 + 1e-9
    assert frc[2] > 0.99 and abs(frc[-5:]).max() < 0.2
    # identical images correlate up to Nyquist; unrelated noise never correlates
    assert frc_resolution(a, a) == 2.0
    rng = np.random.default_rng(3)
    assert math.isnan(frc_resolution(rng.random((64, 64)), rng.random((64, 64))))
    with pytest.raises(ValueError):
        frc_resolution(a, b[:-1])
    with pytest.raises(ValueError):
        threshold_curve("full-bit", np.ones(3))
    half_bit = threshold_curve("half-bit", np.array([10.0, 1e10]))
    assert half_bit[0] > half_bit[1] == pytest.approx(0.1716, abs=1e-3)


def bandpass_texture(x: np.ndarray) -> np.ndarray:
    """A "network" that turns fine noise into texture: amplifies the 1-2 px band 5x."""
    return x + 5 * (gaussian_filter(x, 1.0) - gaussian_filter(x, 2.0))


def clipped_texture(x: np.ndarray) -> np.ndarray:
    """A nonlinear variant: the fine band, saturated into crisp texture."""
    band = gaussian_filter(x, 1.0) - gaussian_filter(x, 2.0)
    scale = band.std()
    return x + 5 * scale * np.tanh(band / scale)


@pytest.mark.parametrize("network", [bandpass_texture, clipped_texture])
def test_noise_driven_texture_does_not_read_finer_by_frc(network):
    _, a, b = halves(3.0)
    # the texture of each half comes from its own noise and decorrelates: coarser or equal
    assert frc_resolution(network(a), network(b)) >= 0.97 * frc_resolution(a, b)


def test_decorrelation_counts_the_texture_that_frc_rejects():
    truth, a, b = halves(3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nanopyx's optional-backend notices
        truth_decorr = decorrelation_resolution(truth)
        textured_decorr = decorrelation_resolution(bandpass_texture(a))
    textured_frc = frc_resolution(bandpass_texture(a), bandpass_texture(b))
    # the single-image measure reads the textured half as much finer than the clean truth...
    assert textured_decorr < 0.7 * truth_decorr
    # ... while FRC keeps reading what the halves share, close to the truth's known value
    assert textured_frc == pytest.approx(expected_frc_resolution(3.0), rel=0.2)
    assert textured_decorr < 0.7 * textured_frc


def test_texture_identical_in_both_halves_is_counted():
    # FRC measures reproducibility: texture made identically in both halves (not from their
    # noise) passes, which is why the halves must be independent noise draws.
    truth, a, b = halves(3.0)
    pattern = gaussian_filter(np.random.default_rng(9).standard_normal(a.shape), 0.7)
    pattern *= 0.5 * truth.std() / pattern.std()
    assert frc_resolution(a + pattern, b + pattern) < 0.6 * frc_resolution(a, b)


def test_stack_frc_from_even_and_odd_frames():
    rng = np.random.default_rng(4)
    truth = gaussian_filter(rng.standard_normal((128, 128)) * math.sqrt(SNR), 2.0, mode="wrap")
    stack = truth[None] + 4 * rng.standard_normal((8, 128, 128))  # 4 frames per half
    even, odd = split_halves(stack)
    assert even.shape == odd.shape == (4, 128, 128)
    value = stack_frc_resolution(even.mean(0), odd.mean(0))
    # each half's mean has noise variance 16 / 4 = 4
    assert value == pytest.approx(expected_frc_resolution(2.0, SNR / 4), rel=0.2)
    with pytest.raises(ValueError):
        split_halves(stack[:1])


@pytest.mark.parametrize("blur", [2.0, 3.0, 4.0, 6.0])
def test_single_image_frc_agrees_with_two_image_frc(blur):
    _, a, b = halves(blur, seed=1)
    assert single_image_frc_resolution(a) == pytest.approx(frc_resolution(a, b), rel=0.15)


def test_single_image_frc_is_monotone_and_floored():
    values = [single_image_frc_resolution(halves(s, seed=2)[1]) for s in (2.0, 3.0, 4.0, 6.0)]
    assert values == sorted(values)
    # a barely blurred image is at the sub-images' Nyquist limit (4 px, corrected)
    assert single_image_frc_resolution(halves(1.0)[1]) == pytest.approx(4 * ONE_IMAGE_CORRECTION)
    # structure finer than a pixel is not shared between neighbouring pixels: nothing to read
    assert math.isnan(single_image_frc_resolution(halves(0.2)[1]))
