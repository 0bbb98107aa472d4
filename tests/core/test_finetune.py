"""The fine-tuning loop: callbacks, loss decrease, exact resume, SAFT-WSF, cancellation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from saft_core.errors import Cancelled, InvalidParameterError, ShapeMismatchError
from saft_core.finetune import finetune
from saft_core.networks import DENConfig, SRConfig, build_den, build_sr, load_model
from saft_core.params import SaftParams
from saft_core.recommend import recommend_iteration
from tests.core.synthetic import filament_stack


@pytest.fixture(scope="module")
def data():
    return filament_stack(n_frames=6, lr_size=32)


def _models(seed=0):
    torch.manual_seed(seed)
    sr = build_sr(SRConfig(nf=8, nb=1, gc=8, scale=4))
    den = build_den(DENConfig(base=4, depth=2))
    return sr, den


def _run(data, params, **kw):
    lr, edges, _ = data
    sr, den = _models()
    return finetune(lr, edges, params, sr_model=sr, den_model=den, compute_metrics=False, **kw)


def test_callbacks_previews_and_loss_falls(data):
    # the reference loop with the gain + offset fit (no haze term), at a rate that moves it
    params = SaftParams.preset("reference", iterations=6, lr=1e-3, tile=16, background="fit")
    seen = []
    summary = _run(data, params, on_iteration=seen.append)
    assert [r.iteration for r in seen] == list(range(7))
    assert set(seen[0].losses) == {"objective", "fidelity"}  # the pretrained network, judged
    assert all(r.preview.shape == (128, 128) for r in seen)
    assert set(seen[1].losses) == {
        *("total", "degradation", "hessian", "sparse", "rotation", "den", "objective", "fidelity")
    }
    totals = [r.losses["total"] for r in seen[1:]]
    assert totals[-1] < totals[0]
    # The checkpoint of any iteration is a loadable SR model.
    model = load_model(seen[3].checkpoint, "sr")
    assert model.config.nf == 8
    assert summary.recommended_iteration == recommend_iteration(
        [r.record() for r in seen], final=True
    )
    assert summary.sigma == pytest.approx(1.1)


@pytest.mark.parametrize("preset", ["reference", "adaptive"])
def test_resume_equals_uninterrupted_run(data, preset):
    # "adaptive" adds weight averaging, warm-up, the background map and the haze penalty:
    # all of their state must survive a resume too.
    params = SaftParams.preset(preset, iterations=3, lr=1e-3, tile=16, seed=5)
    straight = []
    _run(data, params, on_iteration=straight.append)
    resumed = []
    _run(data, params, resume=straight[1].checkpoint, on_iteration=resumed.append)
    assert [r.iteration for r in resumed] == [2, 3]
    for a, b in zip(
        straight[3].checkpoint["state_dict"].values(),
        resumed[-1].checkpoint["state_dict"].values(),
        strict=True,
    ):
        assert torch.equal(a, b)
    assert straight[3].losses == resumed[-1].losses


def test_different_seed_gives_different_run(data):
    a, b = [], []
    _run(data, SaftParams(iterations=1, lr=1e-3, tile=16, seed=1), on_iteration=a.append)
    _run(data, SaftParams(iterations=1, lr=1e-3, tile=16, seed=2), on_iteration=b.append)
    assert a[1].losses != b[1].losses


def test_wsf_loss_falls(data):
    lr, edges, gt = data
    params = SaftParams(mode="wsf", iterations=5, lr=1e-3, tile=16)
    seen = []
    summary = _run(data, params, smlm=gt.sum(0), on_iteration=seen.append)
    totals = [r.losses["wsf"] for r in seen[1:]]
    assert totals[-1] < totals[0]
    assert summary.sigma is None


def test_cancellation_between_steps(data):
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(Cancelled):
        _run(data, SaftParams(iterations=2, tile=16), should_cancel=cancel)


def test_bad_inputs(data):
    lr, edges, gt = data
    with pytest.raises(ShapeMismatchError) as err:
        _run((lr, edges[:, :16], gt), SaftParams(iterations=1))
    assert err.value.field == "edge"
    with pytest.raises(InvalidParameterError) as err:
        _run(data, SaftParams(mode="wsf", iterations=1))
    assert err.value.field == "smlm"
    with pytest.raises(ShapeMismatchError) as err:
        _run(data, SaftParams(mode="wsf", iterations=1), smlm=np.ones((64, 64), np.float32))
    assert err.value.field == "smlm"
    with pytest.raises(InvalidParameterError) as err:
        _run(data, SaftParams(iterations=1, lr=0.5))
    assert err.value.field == "lr"


def test_single_frame_skips_hessian(data):
    lr, edges, _ = data
    seen = []
    sr, den = _models()
    finetune(
        lr[:1],
        edges[:1],
        SaftParams(iterations=1, tile=16),
        sr_model=sr,
        den_model=den,
        compute_metrics=False,
        on_iteration=seen.append,
    )
    assert "hessian" not in seen[1].losses


def test_windows_per_tile_sets_steps_per_iteration(data):
    totals = {}
    for w in (1, None):
        seen = []
        _run(
            data,
            SaftParams(iterations=1, tile=16, windows_per_tile=w),
            on_progress=lambda done, total, info, seen=seen: seen.append(total),
        )
        totals[w] = seen[-1]
    assert totals[1] == 4  # 2x2 tiles, one window each (the reference)
    assert totals[None] == 4 * 2  # 6 frames / 5-frame windows -> 2 windows per tile


def test_weight_averaging_shows_averaged_weights_and_keeps_trained_ones(data):
    params = SaftParams.preset("adaptive", iterations=2, tile=16, windows_per_tile=2)
    seen = []
    _run(data, params, on_iteration=seen.append)
    ckpt = seen[-1].checkpoint
    shown, trained = ckpt["state_dict"], ckpt["saft"]["trained_state_dict"]
    assert shown.keys() == trained.keys()
    # After 8 steps at decay 0.95 the average lags the trained weights but has moved off
    # the pretrained ones.
    sr, _ = _models()
    start = sr.state_dict()
    key = "conv_first.weight"
    assert not torch.equal(shown[key], trained[key])
    assert not torch.equal(shown[key], start[key])
    moved_avg = (shown[key] - start[key]).abs().mean()
    moved_trained = (trained[key] - start[key]).abs().mean()
    assert 0 < moved_avg < moved_trained
    assert set(seen[1].losses) >= {"haze", "degradation", "rotation"}


def test_warmup_ramps_the_rate(data):
    # With a warm-up far longer than the run, the first steps are tiny: the weights move much
    # less than without it.
    def moved(warmup):
        seen = []
        params = SaftParams(iterations=1, lr=1e-3, tile=16, warmup=warmup)
        _run(data, params, on_iteration=seen.append)
        sr, _ = _models()
        after = seen[-1].checkpoint["state_dict"]["conv_first.weight"]
        return float((after - sr.state_dict()["conv_first.weight"]).abs().mean())

    assert moved(1000) < 0.1 * moved(0)
