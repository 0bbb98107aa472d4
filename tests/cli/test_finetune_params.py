"""``saft finetune`` parameter options: presets, explicit overrides, the new schedule knobs,
and one-line exit-2 errors. A 5x16x16 stack and an 8-feature SR network keep a run short."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner, Result

from saft_cli.main import cli
from saft_core.params import DEFAULT_PRESET, PRESETS, SaftParams


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from saft_core.networks import SRConfig, build_sr, save_checkpoint

    d = tmp_path_factory.mktemp("cli-params")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:16, 0:16]
    frames = []
    for t in range(5):
        img = np.full((16, 16), 100.0)
        for cy, cx in [(4, 5), (11, 10 + t % 3)]:
            img += 900 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 3.0)
        frames.append(rng.poisson(img))
    lr = np.asarray(frames, np.uint16)
    tifffile.imwrite(d / "lr.tif", lr, photometric="minisblack")
    edge = (rng.random(lr.shape) * 255).astype(np.float32)
    tifffile.imwrite(d / "edge.tif", edge, photometric="minisblack")
    torch.manual_seed(0)
    save_checkpoint(d / "tiny.pth", build_sr(SRConfig(nf=8, nb=1, gc=8)), "sr")
    return d


def finetune(inputs: Path, run: Path, *args: str) -> Result:
    base = ["finetune", str(inputs / "lr.tif"), "--edge", str(inputs / "edge.tif")]
    base += ["--model", str(inputs / "tiny.pth"), "--device", "cpu", "-o", str(run)]
    return CliRunner().invoke(cli, [*base, *args])


def run_params(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())["params"]


def test_adaptive_preset_is_recorded_with_every_value(inputs: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = finetune(inputs, run, "--preset", "adaptive", "--iterations", "1", "--tile", "16")
    assert result.exit_code == 0, result.output
    p = run_params(run)
    # The preset's values, the explicit --tile over the preset's 32, and nothing else changed.
    assert p == SaftParams.preset("adaptive", iterations=1, tile=16).to_dict()
    assert p["ema"] == 0.95 and p["warmup"] == 30 and p["lr"] == 1e-3
    assert p["background"] == "map" and p["haze_level"] == 0.3
    assert p["windows_per_tile"] == 4 and p["consistency_level"] == 0.1
    assert p["tile"] == 16 and p["sparse_level"] == 1.0
    assert (run / "iteration_01.pth").is_file()


def test_without_a_preset_the_default_preset_applies(inputs: Path, tmp_path: Path) -> None:
    """Options default to None so a preset can fill them; unset, DEFAULT_PRESET's values stay."""
    run = tmp_path / "run"
    args = ["--iterations", "1", "--tile", "16", "--ema", "0.5", "--warmup", "2"]
    args += ["--background", "mean", "--haze-level", "0.2", "--windows-per-tile", "auto"]
    result = finetune(inputs, run, *args)
    assert result.exit_code == 0, result.output
    p = run_params(run)
    expected = SaftParams(
        iterations=1, tile=16, ema=0.5, warmup=2, background="mean", haze_level=0.2,
        windows_per_tile=None,
    ).to_dict()  # fmt: skip
    assert p == expected
    default = PRESETS[DEFAULT_PRESET]
    assert p["lr"] == default["lr"] and p["consistency_level"] == default["consistency_level"]
    assert p["sigma"] == default["sigma"] == "auto"  # the stack's PSF estimate (run.json: sigma)


def test_help_states_the_default_and_the_other_preset_value() -> None:
    out = CliRunner().invoke(cli, ["finetune", "--help"], terminal_width=200).output
    assert "[default: 0.001, reference preset: 1e-5]" in out
    assert "--preset [reference|adaptive]" in out
    assert f"reference preset: {PRESETS['reference']['ema']:g}" in out
    for option in ("--background", "--ema", "--warmup", "--haze-level", "--tile"):
        assert option in out
    assert "--windows-per-tile" in out


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--ema", "1.5"], "ema"),
        (["--preset", "adaptive", "--ema", "1.5"], "ema"),
        (["--warmup", "-1"], "warmup"),
        (["--haze-level", "101"], "haze_level"),
        (["--tile", "8"], "tile"),
        (["--windows-per-tile", "0"], "windows_per_tile"),
        (["--windows-per-tile", "many"], "windows_per_tile"),
        (["--preset", "adaptive", "--lr", "0.01"], "lr"),
    ],
)
def test_bad_values_exit_2_with_one_line(
    inputs: Path, tmp_path: Path, args: list[str], field: str
) -> None:
    run = tmp_path / "r"
    result = finetune(inputs, run, *args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"saft: error ({field}):"), lines
    assert not run.exists()


@pytest.mark.parametrize("args", [["--preset", "fast"], ["--background", "median"]])
def test_unknown_choices_are_usage_errors(inputs: Path, tmp_path: Path, args: list[str]) -> None:
    result = finetune(inputs, tmp_path / "r", *args)
    assert result.exit_code == 2 and "Invalid value" in result.stderr
    assert not (tmp_path / "r").exists()
