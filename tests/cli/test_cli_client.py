"""The client commands of ``saft`` against a real ``saft serve``: exit codes, one-line
errors, the waiting submit, inspection, reconstruction and download."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import tifffile
from click.testing import CliRunner, Result

from saft_cli.main import _register_service_commands, cli
from saft_client import SaftClient
from tests.client.service_fixtures import REPO, Service, free_port, write_stack

pytestmark = pytest.mark.slow

Invoke = Callable[..., Result]


@pytest.fixture(scope="module")
def env(service: Service) -> dict[str, str]:
    return {"SAFT_URL": service.url, "SAFT_API_KEY": service.key}


@pytest.fixture(scope="module")
def run(env: dict[str, str]) -> Invoke:
    """``saft ARGS...`` in-process with the service's URL and key in the environment."""
    _register_service_commands()
    runner = CliRunner()

    def invoke(*args: str, extra_env: dict[str, str | None] | None = None) -> Result:
        return runner.invoke(cli, list(args), env={**env, **(extra_env or {})})

    return invoke


def _one_line_error(result: Result) -> str:
    """The whole stderr of a refused command: exactly one ``saft: error`` line."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("saft: error"), lines
    return lines[0]


def test_submit_wait_prints_the_recommended_iteration(
    run: Invoke, client: SaftClient, tiny_model: str, tmp_path: Path
) -> None:
    lr = write_stack(tmp_path / "cells.tif")
    edge = write_stack(tmp_path / "cells_edge.tif", edge=True)
    result = run(
        "submit", str(lr), "--edge", str(edge), "--model", tiny_model,
        "--iterations", "2", "--sigma", "auto", "--wait",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    job = client.list_jobs(limit=1)[0]
    assert job.succeeded and job.params["sigma"] == "auto"
    assert f"job {job.id} succeeded" in result.stdout
    assert f"recommended iteration: {job.recommended_iteration}" in result.stdout
    assert f"* {job.recommended_iteration}" in result.stdout  # marked in the table
    assert "iteration 2: loss" in result.stderr  # one line per finished iteration

    shown = run("show", job.id)
    assert shown.exit_code == 0 and f"iteration {job.recommended_iteration}" in shown.stdout
    assert "sigma used" in shown.stdout
    as_json = json.loads(run("show", job.id, "--json").stdout)
    assert [it["iteration"] for it in as_json["iterations"]] == [0, 1, 2]

    listed = run("jobs", "--state", "succeeded")
    assert listed.exit_code == 0 and job.id in listed.stdout
    assert job.id in {j["id"] for j in json.loads(run("jobs", "--json").stdout)}

    refused = run("cancel", job.id)
    assert refused.exit_code == 2 and "already succeeded" in _one_line_error(refused)

    out = tmp_path / "out"
    rec = run("reconstruct-job", job.id, "recommended", "--download", str(out))
    assert rec.exit_code == 0, rec.output
    files = sorted(out.iterdir())
    assert [p.suffix for p in files] == [".mp4", ".tif"]
    assert tifffile.imread(files[1]).shape == (4, 128, 128)

    recon_id = files[1].stem.removeprefix("reconstruction-")
    again = run("download", recon_id, "-o", str(tmp_path / "again.tif"))
    assert again.exit_code == 0 and again.stdout.strip() == str(tmp_path / "again.tif")
    assert (tmp_path / "again.tif").read_bytes() == files[1].read_bytes()


def test_submit_without_wait_prints_the_id_and_cancel(
    run: Invoke, client: SaftClient, tiny_model: str, tmp_path: Path
) -> None:
    lr = write_stack(tmp_path / "long.tif")
    result = run("submit", str(lr), "--model", tiny_model, "--iterations", "50")
    assert result.exit_code == 0, result.output
    job_id = result.stdout.strip()
    assert client.get_job(job_id).iterations_total == 50
    cancelled = run("cancel", job_id)
    assert cancelled.exit_code == 0 and job_id in cancelled.stdout
    assert client.wait(job_id, timeout=120).state == "cancelled"
    waited = run("reconstruct-job", job_id, "recommended")
    assert waited.exit_code == 2 and "no recommended iteration" in _one_line_error(waited)


def test_bad_parameter_exits_2_with_one_line_naming_the_field(
    env: dict[str, str], tiny_model: str, tmp_path: Path
) -> None:
    """Through the real entry point, as a user runs it."""
    lr = write_stack(tmp_path / "lr.tif")
    proc = subprocess.run(
        [sys.executable, "-m", "saft_cli.main", "submit", str(lr), "--model", tiny_model,
         "--lr", "5"],
        cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("saft: error (params.lr): lr must be in")


def test_other_refusals_are_one_line_exit_2(run: Invoke, tmp_path: Path) -> None:
    lr = write_stack(tmp_path / "lr.tif")
    cases = [
        (("submit", str(lr), "--model", "no-such-model"), "(sr_model)"),
        (("submit", str(tmp_path / "missing.tif")), "no such file"),
        (("show", "0" * 32), "not found"),
        (("download", "0" * 32), "not found"),
    ]
    for args, expected in cases:
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert expected in _one_line_error(result), args
    several = run("submit", str(lr), "--iterations", "0", "--model", "no-such-model")
    line = _one_line_error(several)
    assert several.exit_code == 2 and "params.iterations" in line and "sr_model" in line

    no_key = run("jobs", extra_env={"SAFT_API_KEY": None})
    assert no_key.exit_code == 2 and "no API key" in _one_line_error(no_key)
    wrong_key = run("jobs", "--api-key", "wrong")
    assert wrong_key.exit_code == 2 and "invalid API key" in _one_line_error(wrong_key)
    nowhere = run("jobs", "--url", f"http://127.0.0.1:{free_port()}")
    assert nowhere.exit_code == 2 and "cannot reach" in _one_line_error(nowhere)


def test_submit_with_a_preset_stores_the_resolved_values(
    run: Invoke, client: SaftClient, tiny_model: str, tmp_path: Path
) -> None:
    lr = write_stack(tmp_path / "preset.tif")
    result = run(
        "submit", str(lr), "--model", tiny_model, "--iterations", "50",
        "--preset", "adaptive", "--lr", "5e-4", "--windows-per-tile", "auto",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    job = client.get_job(result.stdout.strip())
    client.cancel(job.id)  # only the stored parameters matter here
    p = job.params
    assert "preset" not in p and p["lr"] == 5e-4 and p["windows_per_tile"] is None
    assert p["ema"] == 0.95 and p["warmup"] == 30 and p["background"] == "map"
    assert p["tile"] == 32 and p["consistency_level"] == 0.1 and p["haze_level"] == 0.3
    assert client.wait(job.id, timeout=120).state == "cancelled"

    for args, field in [
        (("--preset", "fast"), "(params.preset)"),
        (("--ema", "1.5"), "(params.ema)"),
        (("--preset", "adaptive", "--background", "median"), "(params.background)"),
        (("--windows-per-tile", "many"), "(params.windows_per_tile)"),
    ]:
        refused = run("submit", str(lr), "--model", tiny_model, *args)
        assert refused.exit_code == 2, (args, refused.output)
        assert field in _one_line_error(refused), args
