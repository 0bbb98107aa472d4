"""The `saft` CLI contract: finetune -> run directory -> reconstruct; errors exit 2."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile
import torch

from saft_core.networks import SRConfig, build_sr, save_checkpoint
from saft_core.psf import estimate_psf_sigma
from saft_core.recommend import recommend_iteration
from tests.core.synthetic import filament_stack


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    lr, edges, _ = filament_stack(n_frames=6, lr_size=32)
    tifffile.imwrite(
        d / "lr.tif",
        (lr / lr.max() * 60000).astype(np.uint16),
        imagej=True,
        resolution=(10.0, 10.0),
        metadata={"axes": "TYX", "unit": "um"},
    )
    tifffile.imwrite(d / "edge.tif", edges.astype(np.uint8), imagej=True, metadata={"axes": "TYX"})
    torch.manual_seed(0)
    save_checkpoint(d / "tiny.pth", build_sr(SRConfig(nf=8, nb=1, gc=8)), "sr")
    return d


def saft(*args, check=True):
    proc = subprocess.run(
        [sys.executable, "-m", "saft_cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr)
    return proc


def test_finetune_then_reconstruct(inputs, tmp_path):
    run = tmp_path / "run"
    saft(
        "finetune",
        inputs / "lr.tif",
        "--edge",
        inputs / "edge.tif",
        "--model",
        inputs / "tiny.pth",
        "-o",
        run,
        "--iterations",
        "2",
        "--lr",
        "1e-4",
    )
    rows = list(csv.DictReader((run / "SFSRM-SAFT_Finetuning_Record.csv").open()))
    assert [r["iteration"] for r in rows] == ["0", "1", "2"]
    assert rows[0]["total"] == "" and float(rows[1]["total"]) > 0
    assert {"rse", "rsp", "resolution", "seconds", "degradation", "hessian"} <= set(rows[0])
    for k in range(3):
        assert (run / f"iteration_{k:02d}.pth").is_file()
        assert (run / "previews" / f"iteration_{k:02d}.png").is_file()
        assert tifffile.imread(run / "previews" / f"iteration_{k:02d}.tif").shape == (128, 128)
    info = json.loads((run / "run.json").read_text())
    # the default sigma is "auto": the stack's own PSF estimate, recorded as used
    assert info["params"]["iterations"] == 2 and info["params"]["sigma"] == "auto"
    lr_stack = tifffile.imread(inputs / "lr.tif").astype("float32")
    assert info["sigma_used"] == pytest.approx(estimate_psf_sigma(lr_stack / lr_stack.max()))
    assert {"frc_resolution", "fidelity"} <= set(rows[0])
    records = torch.load(run / "iteration_02.pth", weights_only=True)["saft"]["records"]
    assert info["recommended_iteration"] == recommend_iteration(records, final=True)

    out, mp4 = tmp_path / "sr.tif", tmp_path / "sr.mp4"
    saft(
        "reconstruct",
        inputs / "lr.tif",
        "--edge",
        inputs / "edge.tif",
        "--checkpoint",
        run / "iteration_01.pth",
        "-o",
        out,
        "--video",
        mp4,
    )
    assert tifffile.imread(out).shape == (6, 128, 128)
    assert mp4.stat().st_size > 0


def test_edges_command(inputs, tmp_path):
    saft("edges", inputs / "lr.tif", "-o", tmp_path / "e.tif")
    e = tifffile.imread(tmp_path / "e.tif")
    assert e.shape == (6, 32, 32) and e.min() >= 0 and e.max() <= 255


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--lr", "0.01"], "lr"),
        (["--ksize", "4"], "ksize"),
        (["--sigma", "wide"], "sigma"),
        (["--mode", "wsf"], "smlm"),
    ],
)
def test_bad_parameters_exit_2_with_one_line(inputs, tmp_path, args, needle):
    proc = saft("finetune", inputs / "lr.tif", "-o", tmp_path / "r", *args, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0]
    assert not (tmp_path / "r").exists()


def test_bad_stack_exit_2(inputs, tmp_path):
    bad = tmp_path / "4d.tif"
    tifffile.imwrite(bad, np.zeros((2, 3, 32, 32), np.uint8), photometric="minisblack")
    proc = saft("finetune", bad, "-o", tmp_path / "r", check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    proc = saft(
        "reconstruct",
        inputs / "lr.tif",
        "--checkpoint",
        inputs / "edge.tif",
        "-o",
        tmp_path / "o.tif",
        check=False,
    )
    assert proc.returncode == 2 and "checkpoint" in proc.stderr.lower()
    assert not (tmp_path / "o.tif").exists()
