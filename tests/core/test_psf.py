"""PSF width from the stack's own data, and resampling to a model's training sampling."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from saft_core.errors import InvalidParameterError
from saft_core.psf import (
    ResamplePlan,
    estimate_psf_sigma,
    output_to_input_grid,
    plan_resampling,
    resample_stack,
    sampling_ratio,
)
from saft_core.simulate import HIGH_BACKGROUND, LOW_SNR, TRAINING, simulate_stack


@pytest.mark.parametrize("sigma", [1.0, 1.5, 2.0, 2.5])
@pytest.mark.parametrize(
    "condition",
    [TRAINING, LOW_SNR, HIGH_BACKGROUND],
    ids=["training", "low_snr", "high_background"],
)
def test_sigma_of_simulated_stacks_within_15_percent(sigma, condition):
    # Poisson + read noise, camera offset and a smooth background varying by 50-80%.
    sim = simulate_stack(replace(condition, psf_sigma_lr=sigma), 8, (128, 128), seed=3)
    assert estimate_psf_sigma(sim.lr) == pytest.approx(sigma, rel=0.15)


@pytest.mark.parametrize("sigma", [1.0, 2.5])
def test_an_out_of_focus_layer_does_not_widen_the_estimate(sigma):
    sim = simulate_stack(replace(TRAINING, psf_sigma_lr=sigma), 8, (128, 128), seed=4)
    # a second structure layer far out of focus (blur 5 LR px), with its own shot noise
    other = replace(TRAINING, psf_sigma_lr=sigma, structure="mitochondria")
    defocused = np.stack(
        [gaussian_filter(f, 5.0) for f in simulate_stack(other, 8, (128, 128), 8).signal]
    )
    haze = np.random.default_rng(0).poisson(2.0 * defocused).astype(np.float32)
    assert haze.mean() > 0.4 * sim.signal.mean()
    assert estimate_psf_sigma(sim.lr + haze) == pytest.approx(sigma, rel=0.15)


@pytest.mark.parametrize("sigma", [1.0, 2.0])
def test_sigma_from_a_single_frame(sigma):
    sim = simulate_stack(replace(TRAINING, psf_sigma_lr=sigma), 1, (128, 128), seed=5)
    assert estimate_psf_sigma(sim.lr[0]) == pytest.approx(sigma, rel=0.15)


def test_wider_psf_reads_wider():
    values = [
        estimate_psf_sigma(simulate_stack(replace(TRAINING, psf_sigma_lr=s), 6, (96, 96), 1).lr)
        for s in (1.0, 1.4, 1.8, 2.2)
    ]
    assert values == sorted(values)


def test_pure_noise_and_blank_frames_are_refused():
    rng = np.random.default_rng(0)
    with pytest.raises(InvalidParameterError, match="too little signal"):
        estimate_psf_sigma(100 + rng.normal(0, 3, (6, 64, 64)))
    with pytest.raises(InvalidParameterError):
        estimate_psf_sigma(np.zeros((8, 8)))  # too small
    with pytest.raises(InvalidParameterError):
        estimate_psf_sigma(np.full((2, 32, 32), np.nan))


def test_sampling_ratio_and_plan():
    assert sampling_ratio(2.0, 1.0) == 2.0
    plan = plan_resampling(2.0, 1.0)
    assert isinstance(plan, ResamplePlan)
    assert plan.factor == pytest.approx(0.5)
    assert "oversampled" in plan.reason
    assert plan_resampling(1.2, 1.0).factor == 1.0  # within the 25% tolerance
    assert plan_resampling(1.2, 1.0, tolerance=0.1).factor == pytest.approx(1 / 1.2)
    assert plan_resampling(0.5, 1.0).factor == pytest.approx(2.0)  # undersampled: upsample
    with pytest.raises(InvalidParameterError):
        sampling_ratio(0.0, 1.0)


def test_resampling_brings_the_psf_to_the_training_width():
    sim = simulate_stack(replace(TRAINING, psf_sigma_lr=2.0), 8, (192, 192), seed=2)
    plan = plan_resampling(estimate_psf_sigma(sim.lr), TRAINING.psf_sigma_lr)
    assert plan.factor == pytest.approx(0.5, rel=0.15)
    small = resample_stack(sim.lr, plan.factor)
    assert small.shape == (8, round(192 * plan.factor), round(192 * plan.factor))
    assert small.dtype == np.float32
    assert estimate_psf_sigma(small) == pytest.approx(1.0, rel=0.15)
    # intensities are per-pixel means: the mean level is kept
    assert small.mean() == pytest.approx(sim.lr.mean(), rel=0.01)


def test_frames_are_resampled_independently():
    rng = np.random.default_rng(0)
    stack = rng.random((3, 40, 40)).astype(np.float32)
    out = resample_stack(stack, 0.5)
    np.testing.assert_allclose(out[1], resample_stack(stack[1], 0.5), rtol=1e-6)
    assert resample_stack(stack, 1.0).shape == stack.shape
    assert resample_stack(stack.astype(np.float64), 1.0).dtype == np.float32
    with pytest.raises(InvalidParameterError):
        resample_stack(stack, 0.0)


def test_output_returns_to_the_input_sr_grid():
    # A smooth image on the 4x grid of a 48x48 input, resampled as the SR of a 0.5x input
    # would be, comes back onto the 4x grid of the original input.
    rng = np.random.default_rng(1)
    truth = gaussian_filter(rng.random((192, 192)), 8)
    small_sr = resample_stack(truth, 0.5)  # the SR grid of the 24x24 resampled input
    back = output_to_input_grid(small_sr, 0.5, 4, input_shape=(48, 48))
    assert back.shape == (192, 192)
    inner = (slice(16, -16), slice(16, -16))
    err = np.abs(back[inner] - truth[inner]).max() / np.ptp(truth)
    assert err < 0.02
    # stacks keep their leading axes; the original shape is inferred when not given
    assert output_to_input_grid(np.stack([small_sr] * 2), 0.5, 4).shape == (2, 192, 192)


def test_plan_for_a_model_trained_over_a_range_of_psf_widths():
    from saft_core.psf import plan_for_model

    broad = {"psf_sigma_lr_px": 1.44, "pixel_size_um": 0.1, "psf_sigma_lr_px_range": [0.8, 2.6]}
    assert plan_for_model(2.0, broad).factor == 1.0  # 2x oversampled: inside the range
    assert plan_for_model(0.7, broad).factor == 1.0  # within the tolerance of the low end
    wide = plan_for_model(5.2, broad)
    assert wide.factor == pytest.approx(0.5) and "5.20" in wide.reason
    assert plan_for_model(2.0, {"psf_sigma_lr_px": 1.0, "pixel_size_um": None}).factor == 0.5
    assert plan_for_model(2.0, None).factor == 1.0  # foreign weights: left alone
