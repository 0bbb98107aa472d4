"""``saft`` exit codes beyond 0 and 2 (1 internal error, 130 Ctrl-C) and a SAFT-WSF run with
``saft finetune --mode wsf --smlm``. A 6x32x32 stack and an 8-feature SR network keep it short."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

from saft_cli.main import cli
from tests.core.synthetic import filament_stack


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from saft_core.networks import SRConfig, build_sr, save_checkpoint

    d = tmp_path_factory.mktemp("cli-wsf")
    lr, edges, truth = filament_stack(n_frames=6, lr_size=32)
    tifffile.imwrite(d / "lr.tif", lr.astype(np.float32))
    tifffile.imwrite(d / "edge.tif", edges.astype(np.float32))
    tifffile.imwrite(d / "smlm.tif", truth.mean(axis=0).astype(np.float32))  # the SR grid
    torch.manual_seed(0)
    save_checkpoint(d / "tiny.pth", build_sr(SRConfig(nf=8, nb=1, gc=8, scale=4)), "sr")
    return d


def _edges_with(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    def compute_edges(*args: object, **kwargs: object) -> None:
        raise exc

    monkeypatch.setattr("saft_core.edges.compute_edges", compute_edges)


def test_internal_error_exits_1_not_2(
    inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug is not a user error: exit 1 with the exception kept, not the one-line exit 2."""
    _edges_with(monkeypatch, RuntimeError("boom"))
    result = CliRunner().invoke(cli, ["edges", str(inputs / "lr.tif"), "-o", str(tmp_path / "e")])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, RuntimeError)
    assert "saft: error" not in result.output


def test_ctrl_c_exits_130(inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _edges_with(monkeypatch, KeyboardInterrupt())
    result = CliRunner().invoke(cli, ["edges", str(inputs / "lr.tif"), "-o", str(tmp_path / "e")])
    assert result.exit_code == 130, result.output
    assert "interrupted" in result.output
    assert not (tmp_path / "e").exists()


def test_finetune_wsf_with_smlm(inputs: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = [
        "finetune", str(inputs / "lr.tif"), "--mode", "wsf", "--smlm", str(inputs / "smlm.tif"),
        "--model", str(inputs / "tiny.pth"), "-o", str(run), "--iterations", "2",
        "--lr", "1e-4", "--tile", "16",
    ]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    info = json.loads((run / "run.json").read_text())
    assert info["params"]["mode"] == "wsf" and info["params"]["iterations"] == 2
    for k in range(3):
        assert (run / f"iteration_{k:02d}.pth").is_file()

    # Without the SMLM image, WSF is a user error: one line, exit 2.
    smlm_args = ("--smlm", str(inputs / "smlm.tif"))
    no_smlm = [str(tmp_path / "run2") if a == str(run) else a for a in args if a not in smlm_args]
    result = CliRunner().invoke(cli, no_smlm)
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines()[-1].startswith("saft: error (smlm)"), result.output
