"""`saft doctor` for real: against the PostgreSQL and Redis of this machine, then with an
unreachable broker and an unusable data dir (exit 1, one line per problem)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def doctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SAFT_")}
    clean["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    return subprocess.run(
        [sys.executable, "-m", "saft_cli.main", "doctor", *args],
        env={**clean, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def settings_env(tmp_path: Path, pg_url: str, redis_url: str) -> dict[str, str]:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    return {
        "SAFT_DATA_DIR": str(data),
        "SAFT_DATABASE_URL": pg_url,
        "SAFT_BROKER_URL": redis_url,
    }


def test_doctor_passes_on_this_machine(
    tmp_path: Path, pg_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from persistence.db import session_scope
    from persistence.settings import get_settings
    from persistence.workers import register_worker
    from saft_core.capabilities import probe

    monkeypatch.setenv("SAFT_DATABASE_URL", pg_url)  # session_scope uses the settings' database
    get_settings.cache_clear()
    with session_scope() as s:
        register_worker(
            s,
            "gpuhost:4242",
            hostname="gpuhost",
            pid=4242,
            queue="gpu",
            device="cuda:1 (NVIDIA H200)",
            capabilities=probe().to_dict(),
            environment={},
        )
    get_settings.cache_clear()

    done = doctor(settings_env(tmp_path, pg_url, redis_url))
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for label in (
        "python",
        "packages",
        "torch build",
        "GPUs",
        "edge maps",
        "metrics",
        "MP4 video",
        "device (auto)",
        "data dir",
        "database",
        "broker",
        "workers",
    ):
        assert any(line.startswith(label) for line in out.splitlines()), (label, out)
    assert "gpuhost:4242 queue gpu: cuda:1 (NVIDIA H200); alive" in out
    assert "no problems found" in out and done.stderr == ""

    report: dict[str, Any] = json.loads(
        doctor(settings_env(tmp_path, pg_url, redis_url), "--json").stdout
    )
    assert report["problems"] == []
    assert report["database"]["error"] is None and report["broker"]["error"] is None
    assert report["packages"]["torch"] and report["build"]["torch"]
    assert {w["id"] for w in report["workers"]} >= {"gpuhost:4242"}


def test_doctor_fails_with_one_line_per_problem(
    tmp_path: Path, pg_url: str, redis_url: str
) -> None:
    env = settings_env(tmp_path, pg_url, redis_url)
    env["SAFT_BROKER_URL"] = "redis://:s3cret@127.0.0.1:1/0"  # nothing listens on port 1
    done = doctor(env)
    assert done.returncode == 1, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("saft doctor: broker redis://:***@127.0.0.1:1/0 unreachable:")
    assert "s3cret" not in done.stdout + done.stderr

    env["SAFT_DATA_DIR"] = str(tmp_path / "missing")
    env["SAFT_DATABASE_URL"] = "postgresql+psycopg://postgres@127.0.0.1:1/nope"
    done = doctor(env)
    assert done.returncode == 1
    problems = [line.removeprefix("saft doctor: ") for line in done.stderr.strip().splitlines()]
    assert [p.split(" ")[0] for p in problems] == ["data", "database", "broker"], problems
    assert not (tmp_path / "missing").exists()  # doctor changes nothing


def test_missing_optional_parts_are_warnings(tmp_path: Path, pg_url: str, redis_url: str) -> None:
    env = settings_env(tmp_path, pg_url, redis_url)
    env["IMAGEIO_FFMPEG_EXE"] = str(tmp_path / "no-ffmpeg")
    done = doctor(env)
    assert done.returncode == 0, done.stderr
    assert "MP4 video unavailable: ffmpeg" in done.stdout
    assert re.search(r"^MP4 video +NO: ffmpeg .*no-ffmpeg", done.stdout, re.M), done.stdout


def test_invalid_device_setting_is_a_problem(tmp_path: Path, pg_url: str, redis_url: str) -> None:
    env = {**settings_env(tmp_path, pg_url, redis_url), "SAFT_DEVICE": "cuda:7"}
    done = doctor(env)
    assert done.returncode == 1
    assert "saft doctor: device unavailable: " in done.stderr
