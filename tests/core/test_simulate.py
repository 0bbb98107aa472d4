"""The simulator: determinism, shapes, GT/LR alignment through the RSF, noise, bleaching, drift."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from saft_core.simulate import (
    BROAD_RANGES,
    HIGH_BACKGROUND,
    LOW_SNR,
    OTHER_STRUCTURE,
    PRESETS,
    STRUCTURES,
    TRAINING,
    WIDE_PSF,
    SimCondition,
    rsf_reference,
    sample_condition,
    simulate_stack,
)


def _structure(res, cond):
    """Noiseless structure photons per LR pixel: the clean frame minus background and offset."""
    return res.clean - res.background[None] - cond.offset


def _fit_r(ref: np.ndarray, obs: np.ndarray, border: int) -> float:
    """Correlation after a least-squares gain+offset fit, away from the frame border."""
    a = ref[:, border:-border, border:-border].ravel().astype(np.float64)
    b = obs[:, border:-border, border:-border].ravel().astype(np.float64)
    design = np.stack([a, np.ones_like(a)], 1)
    coef, *_ = np.linalg.lstsq(design, b, rcond=None)
    return float(np.corrcoef(design @ coef, b)[0, 1])


def test_deterministic_by_seed_and_shapes():
    a = simulate_stack(TRAINING, 3, (24, 32), seed=7)
    b = simulate_stack(TRAINING, 3, (24, 32), seed=7)
    c = simulate_stack(TRAINING, 3, (24, 32), seed=8)
    assert a.lr.shape == (3, 24, 32) and a.gt.shape == (3, 96, 128)
    assert a.clean.shape == a.lr.shape and a.background.shape == (24, 32)
    assert a.lr.dtype == np.float32 and a.gt.dtype == np.float32
    np.testing.assert_array_equal(a.lr, b.lr)
    np.testing.assert_array_equal(a.gt, b.gt)
    assert not np.array_equal(a.lr, c.lr)
    assert a.params["condition"]["structure"] == "filaments+er"


@pytest.mark.parametrize(
    "cond", [TRAINING, WIDE_PSF, OTHER_STRUCTURE], ids=["training", "wide_psf", "other_structure"]
)
def test_gt_aligns_with_lr_through_the_rsf(cond):
    res = simulate_stack(cond, 4, (48, 48), seed=3)
    ref = rsf_reference(res.gt, cond.psf_sigma_lr)
    border = int(np.ceil(3 * cond.psf_sigma_lr))  # the reference cannot see past the crop
    assert _fit_r(ref, _structure(res, cond), border) > 0.99
    # The peak of frame 0's structure signal is the requested photon count.
    assert float(_structure(res, cond)[0].max()) == pytest.approx(cond.photons, rel=1e-3)


def test_gt_aligns_with_noisy_lr_at_high_snr():
    cond = replace(TRAINING, photons=5000.0, background=20.0)
    res = simulate_stack(cond, 4, (48, 48), seed=5)
    ref = rsf_reference(res.gt, cond.psf_sigma_lr)
    assert _fit_r(ref, res.lr - res.background[None] - cond.offset, 3) > 0.95
    # Structures, not noise or background, dominate the raw frames at high SNR.
    assert _fit_r(ref, res.lr, 3) > 0.9


@pytest.mark.parametrize(
    "cond", [TRAINING, LOW_SNR, HIGH_BACKGROUND], ids=["training", "low_snr", "high_background"]
)
def test_noise_matches_photons(cond):
    res = simulate_stack(cond, 4, (48, 48), seed=1)
    expected_var = res.clean - cond.offset + cond.read_noise**2  # Poisson + read noise
    z = (res.lr - res.clean) / np.sqrt(expected_var)
    assert abs(float(z.mean())) < 0.02
    assert float(z.std()) == pytest.approx(1.0, abs=0.03)
    # Peak SNR follows the photon budget: low-SNR frames are much noisier relative to signal.
    peak_snr = cond.photons / np.sqrt(cond.photons + cond.background + cond.read_noise**2)
    assert peak_snr == pytest.approx(
        float(_structure(res, cond)[0].max() / np.sqrt(expected_var[0].max())), rel=0.5
    )


def test_photobleaching_lowers_mean_signal():
    cond = replace(TRAINING, bleach_rate=0.05)
    res = simulate_stack(cond, 12, (32, 32), seed=2)
    means = _structure(res, cond).mean(axis=(1, 2))
    assert np.all(np.diff(means) < 0)
    assert means[-1] / means[0] == pytest.approx(np.exp(-0.05 * 11), rel=0.1)
    assert res.gt[-1].sum() < res.gt[0].sum()


@pytest.mark.parametrize("deform", [0.0, 0.25])
def test_drift_moves_frames_by_the_requested_amount(deform):
    from skimage.registration import phase_cross_correlation

    cond = replace(TRAINING, drift=0.3, deform=deform, bleach_rate=0.0)
    res = simulate_stack(cond, 10, (48, 48), seed=4)
    drift = np.asarray(res.params["drift_yx_lr"])
    assert np.hypot(*drift[9]) == pytest.approx(0.3 * 9)
    for t in (1, 5, 9):
        # The registration peak (sub-pixel centroid of the cross-correlation) of GT frames.
        shift, _, _ = phase_cross_correlation(res.gt[t], res.gt[0], upsample_factor=20)
        np.testing.assert_allclose(shift / 4, drift[t], atol=0.05 + 0.2 * deform)


def test_presets_and_structures():
    assert set(PRESETS) == {
        "training",
        "low_snr",
        "wide_psf",
        "high_background",
        "other_structure",
        "oversampled_haze",
        "fast_motion",
    }
    assert LOW_SNR.photons < TRAINING.photons
    assert WIDE_PSF.psf_sigma_lr > TRAINING.psf_sigma_lr
    assert HIGH_BACKGROUND.background > 10 * TRAINING.background
    assert set(OTHER_STRUCTURE.structures()).isdisjoint(TRAINING.structures())
    assert SimCondition(structure="all").structures() == STRUCTURES
    with pytest.raises(ValueError):
        SimCondition(structure="nuclei").structures()


def test_every_structure_renders_a_long_stack():
    # speed is a benchmark figure (bench/), not a timed test
    res = simulate_stack(replace(TRAINING, structure="all"), 50, (128, 128), seed=0)
    assert res.gt.shape == (50, 512, 512)
    assert all(n > 0 for n in res.params["n_points"].values())
    assert set(res.params["n_points"]) == set(STRUCTURES)


def test_out_of_focus_light_is_background_not_truth():
    sharp = simulate_stack(replace(TRAINING, defocus=0.0), 2, (64, 64), seed=3)
    hazy = simulate_stack(replace(TRAINING, defocus=1.0, defocus_sigma_lr=5.0), 2, (64, 64), seed=3)
    np.testing.assert_array_equal(sharp.gt, hazy.gt)
    extra = hazy.background - sharp.background
    assert extra.min() >= 0 and extra.max() == pytest.approx(TRAINING.photons, rel=1e-3)
    assert np.abs(np.diff(extra, axis=0)).max() < 0.2 * TRAINING.photons  # smooth: out of focus


def test_broad_conditions_span_their_ranges():
    rng = np.random.default_rng(0)
    conds = [sample_condition(rng) for _ in range(300)]
    for name, (low, high) in BROAD_RANGES.items():
        values = [getattr(c, name) for c in conds if name != "defocus" or c.defocus > 0]
        assert low <= min(values) and max(values) <= high
        assert max(values) - min(values) > 0.7 * (high - low) or name in ("photons", "background")
    assert {s for c in conds for s in c.structures()} == set(STRUCTURES)
    assert 0.3 < np.mean([c.defocus > 0 for c in conds]) < 0.9
