"""Training of the default networks: a smoke run, and the shipped weights against baselines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from saft_core.networks import WEIGHTS_DIR, DENConfig, SRConfig, load_model
from saft_core.pretraining import (
    VALIDATION_SEED_BASE,
    TrainConfig,
    evaluate_models,
    train_base,
)
from saft_core.simulate import TRAINING, simulate_stack

CARD = WEIGHTS_DIR / "card.json"


def test_default_weights_and_card_are_shipped():
    for name in ("default_sr.pth", "default_den.pth", "card.json", "MODEL_CARD.md"):
        assert (WEIGHTS_DIR / name).is_file(), f"saft_core/weights/{name} is missing"


TINY = TrainConfig(
    condition="training",  # one condition: a loss that must fall in a few steps
    val_stacks=1,
    sr=SRConfig(nf=8, nb=1, gc=8),
    den=DENConfig(base=4, depth=2),
    n_stacks=2,
    frames_per_stack=2,
    lr_size=32,
    crop=16,
    batch=4,
    den_batch=16,
    lr=2e-3,
    den_lr=3e-3,
    warmup=2,
    den_steps=40,
    val_frames=1,
    val_size=32,
)


@pytest.fixture(scope="module")
def heldout():
    """A small held-out TRAINING-condition stack (seed disjoint from any training seed)."""
    from saft_core.edges import compute_edges

    sim = simulate_stack(TRAINING, 4, (64, 64), seed=VALIDATION_SEED_BASE + 77)
    return sim, compute_edges(sim.lr)


def test_smoke_training_lowers_the_loss_and_writes_the_card(tmp_path: Path):
    seen = []
    card = train_base(
        tmp_path, steps=40, seed=3, threads=1, config=TINY, progress=lambda *a: seen.append(a)
    )
    for kind in ("sr", "den"):
        hist = np.array(card["loss_history"][kind])[:, 1]
        assert hist[-5:].mean() < hist[:5].mean(), kind
    assert seen[-1][0] == seen[-1][1] == 2 + 40 + 40
    assert {"sr", "bicubic", "den", "noisy"} <= set(card["validation"])
    assert card["threads"] == 1 and card["steps"] == {"sr": 40, "den": 40}
    assert json.loads((tmp_path / "card.json").read_text())["seed"] == 3
    assert "PSNR" in (tmp_path / "MODEL_CARD.md").read_text()
    sr = load_model(tmp_path / "default_sr.pth", "sr")
    assert sr.config == TINY.sr
    assert load_model(tmp_path / "default_den.pth", "den").config == TINY.den
    # Edge maps are cached: a second run reuses them and gives the same networks.
    assert list((tmp_path / "cache").glob("edges-*.npy"))
    card2 = train_base(
        tmp_path / "again", steps=40, seed=3, threads=1, config=TINY, cache_dir=tmp_path / "cache"
    )
    assert card2["validation"]["sr"] == card["validation"]["sr"]


def test_default_sr_beats_bicubic_and_den_beats_noisy(heldout):
    sim, edges = heldout
    m = evaluate_models(load_model("default", "sr"), load_model("default", "den"), sim, edges)
    assert m["sr"]["psnr"] > m["bicubic"]["psnr"]
    assert m["sr"]["ssim"] > m["bicubic"]["ssim"]
    assert m["den"]["psnr"] > m["noisy"]["psnr"]


def test_default_models_match_the_card():
    card = json.loads(CARD.read_text())
    sr, den = load_model("default", "sr"), load_model("default", "den")
    assert SRConfig(**card["sr"]["config"]) == sr.config
    assert DENConfig(**card["den"]["config"]) == den.config
    assert sum(p.numel() for p in sr.parameters()) == card["sr"]["parameters"]
    for name, info in card["files"].items():
        path = WEIGHTS_DIR / name
        assert path.stat().st_size == info["bytes"] < 8 * 1024**2
    ckpt = torch.load(WEIGHTS_DIR / "default_sr.pth", weights_only=True)
    assert ckpt["format"] == "saft-checkpoint/1" and ckpt["kind"] == "sr"
    v = card["validation"]
    assert v["sr"]["psnr"] > v["bicubic"]["psnr"] and v["den"]["psnr"] > v["noisy"]["psnr"]


def test_broad_training_records_its_psf_range():
    from saft_core.pretraining import BROAD, trained_condition
    from saft_core.simulate import BROAD_RANGES

    cond = trained_condition(TrainConfig(condition=BROAD))
    assert cond["psf_sigma_lr_px_range"] == list(BROAD_RANGES["psf_sigma_lr"])
    low, high = cond["psf_sigma_lr_px_range"]
    assert low < cond["psf_sigma_lr_px"] < high
    assert trained_condition(TrainConfig(condition="wide_psf"))["psf_sigma_lr_px"] == 1.6
    # different training fields draw different conditions, reproducibly
    cfg = TrainConfig()
    assert cfg.condition_for(1) == cfg.condition_for(1) != cfg.condition_for(2)
