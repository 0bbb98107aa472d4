"""Quality metrics vs ground truth: invariant to gain/offset, sensitive to blur and noise."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from saft_core.truth_metrics import psnr, quality_vs_gt, ssim


@pytest.fixture
def ref():
    rng = np.random.default_rng(0)
    return gaussian_filter(rng.random((64, 64)), 2).astype(np.float32)


def test_gain_offset_invariance(ref):
    q = quality_vs_gt(3.0 * ref + 7.0, ref)
    assert q["psnr"] > 60 and q["ssim"] > 0.999 and q["nrmse"] < 1e-3


def test_degradation_lowers_scores(ref):
    rng = np.random.default_rng(1)
    noisy = ref + 0.05 * rng.standard_normal(ref.shape).astype(np.float32)
    blurred = gaussian_filter(ref, 3)
    for bad in (noisy, blurred):
        q = quality_vs_gt(bad[None], ref[None])
        assert q["psnr"] < 40 and q["ssim"] < 0.99
    assert psnr(noisy, ref) < psnr(ref + 0.01 * (noisy - ref), ref)
    assert ssim(ref, ref) == pytest.approx(1.0)
