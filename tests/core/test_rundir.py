"""The one run path: a fine-tune into a run directory, its files, and resuming into it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from saft_core.errors import InvalidParameterError
from saft_core.networks import DENConfig, SRConfig, build_den, build_sr
from saft_core.params import SaftParams
from saft_core.rundir import RECORD_CSV, RUN_JSON, run_into
from tests.core.synthetic import filament_stack

PARAMS = SaftParams(iterations=2, lr=1e-3, tile=16, seed=3)


class Crash(Exception):
    """Stands in for a worker dying after an iteration's files are on disk."""


@pytest.fixture(scope="module")
def data():
    return filament_stack(n_frames=6, lr_size=32)


def _run(data, run_dir: Path, **kw):
    lr, edges, _ = data
    torch.manual_seed(0)
    sr = build_sr(SRConfig(nf=8, nb=1, gc=8, scale=4))
    den = build_den(DENConfig(base=4, depth=2))
    return run_into(
        run_dir,
        lr,
        edges,
        PARAMS,
        sr_model=sr,
        den_model=den,
        compute_metrics=False,
        pixel_size=0.1,
        run_info={"note": "test"},
        **kw,
    )


def _rows(run_dir: Path) -> list[dict[str, str]]:
    """CSV rows without the wall-clock column."""
    with (run_dir / RECORD_CSV).open(newline="") as fh:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(fh)]


def _files(run_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("straight")
    seen = []
    summary = _run(data, run_dir, on_iteration=seen.append)
    return run_dir, summary, seen


def test_run_writes_every_iteration_before_the_callback(straight):
    run_dir, summary, seen = straight
    assert [r.iteration for r in seen] == [0, 1, 2]
    assert _files(run_dir) == [
        RECORD_CSV,
        *(f"iteration_{k:02d}.pth" for k in range(3)),
        *(f"previews/iteration_{k:02d}.{ext}" for k in range(3) for ext in ("png", "tif")),
        RUN_JSON,
    ]
    assert [row["iteration"] for row in _rows(run_dir)] == ["0", "1", "2"]
    info = json.loads((run_dir / RUN_JSON).read_text())
    assert info["note"] == "test" and info["iterations_done"] == 2
    assert info["recommended_iteration"] == summary.recommended_iteration
    # No temporary files of the atomic writes are left behind.
    assert not list(run_dir.rglob(".*.tmp"))


def test_callback_sees_the_iteration_files_on_disk(data, tmp_path):
    on_disk = []

    def check(result):
        on_disk.append((tmp_path / f"iteration_{result.iteration:02d}.pth").is_file())
        raise Crash

    with pytest.raises(Crash):
        _run(data, tmp_path, on_iteration=check)
    assert on_disk == [True]
    assert not (tmp_path / RUN_JSON).exists()  # a run that did not finish has no run.json


@pytest.mark.parametrize("resume", [True, 1])
def test_resumed_run_ends_identical_to_an_uninterrupted_one(data, straight, tmp_path, resume):
    # The run dies after iteration 2's files are written but (for the worker) before it was
    # committed; resuming after the last checkpoint (True) or after iteration 1 (the last
    # committed one) must both end as the uninterrupted run.
    def crash_at_2(result):
        if result.iteration == 2:
            raise Crash

    with pytest.raises(Crash):
        _run(data, tmp_path, on_iteration=crash_at_2)
    if resume is True:
        (tmp_path / "iteration_02.pth").unlink()  # died while writing iteration 2
    seen = []
    _run(data, tmp_path, resume=resume, on_iteration=seen.append)
    assert [r.iteration for r in seen] == [2]

    run_dir, _, _ = straight
    assert _files(tmp_path) == _files(run_dir)
    assert _rows(tmp_path) == _rows(run_dir)
    assert json.loads((tmp_path / RUN_JSON).read_text()) == json.loads(
        (run_dir / RUN_JSON).read_text()
    )
    a = torch.load(run_dir / "iteration_02.pth", weights_only=True)
    b = torch.load(tmp_path / "iteration_02.pth", weights_only=True)
    for x, y in zip(a["state_dict"].values(), b["state_dict"].values(), strict=True):
        assert torch.equal(x, y)


def test_resume_with_nothing_to_resume_is_a_user_error(data, tmp_path):
    with pytest.raises(InvalidParameterError) as err:
        _run(data, tmp_path, resume=True)
    assert err.value.field == "resume"
