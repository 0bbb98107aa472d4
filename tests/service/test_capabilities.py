"""saft_core.capabilities against real failures: a nanopyx that cannot be imported and an
ffmpeg binary that does not exist, in a fresh interpreter (no mocks of the science)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import select

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
import saft_core.capabilities as c
light = "torch" not in sys.modules and "nanopyx" not in sys.modules
print(json.dumps({"light": light, "caps": c.probe().to_dict()}))
"""


def run_probe(tmp_path: Path, *, break_nanopyx: bool, ffmpeg: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("IMAGEIO_FFMPEG_EXE",)}
    paths = [str(REPO)]
    if break_nanopyx:
        fake = tmp_path / "fake"
        fake.mkdir()
        (fake / "nanopyx.py").write_text("raise ImportError('nanopyx build is broken here')\n")
        paths.insert(0, str(fake))
    env["PYTHONPATH"] = os.pathsep.join(paths)
    if ffmpeg is not None:
        env["IMAGEIO_FFMPEG_EXE"] = ffmpeg
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_missing_nanopyx_and_ffmpeg_are_reported_with_reasons(tmp_path: Path) -> None:
    out = run_probe(tmp_path, break_nanopyx=True, ffmpeg=str(tmp_path / "no-such-ffmpeg"))
    assert out["light"], "importing saft_core.capabilities must not import torch or nanopyx"
    caps = out["caps"]
    assert caps["metrics"]["available"] is False
    assert "nanopyx build is broken here" in caps["metrics"]["reason"]
    assert "install nanopyx" in caps["metrics"]["reason"]
    assert caps["edges"]["available"] is True  # edge maps are numpy: no optional part
    assert caps["video"]["available"] is False
    assert "no-such-ffmpeg" in caps["video"]["reason"]
    assert caps["device"]["available"] is True  # the CPU is always there
    assert caps["device"]["detail"].startswith(("cpu", "cuda"))


def test_ffmpeg_that_fails_to_run_is_unavailable(tmp_path: Path) -> None:
    broken = tmp_path / "ffmpeg"
    broken.write_text("#!/bin/sh\nexit 3\n")
    broken.chmod(0o755)
    caps = run_probe(tmp_path, break_nanopyx=False, ffmpeg=str(broken))["caps"]
    assert caps["video"] == {
        "available": False,
        "reason": f"ffmpeg {broken} exited with 3",
        "detail": None,
    }


def test_installed_parts_are_available(tmp_path: Path) -> None:
    caps = run_probe(tmp_path, break_nanopyx=False, ffmpeg=None)["caps"]
    for name in ("edges", "metrics", "video", "device"):
        assert caps[name]["available"] is True, caps[name]
        assert caps[name]["reason"] is None
    assert caps["video"]["detail"].startswith("ffmpeg version")


def test_unknown_device_is_unavailable_with_the_reason() -> None:
    from saft_core.capabilities import device_capability

    cap = device_capability("tpu:0")
    assert cap.available is False
    assert "device must be" in cap.reason


# ---- a worker without nanopyx and ffmpeg: the run degrades, with the reason recorded -------

RUN = """
import json, logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
from persistence import jobs
from persistence.db import session_scope
from persistence.tables import Job, Reconstruction, User
from worker import runner

with_edges, without_edges = sys.argv[1:3]
out = {"with_edges": runner.run_job(with_edges), "without_edges": runner.run_job(without_edges)}
with session_scope() as s:
    job = s.get_one(Job, with_edges)
    rec = jobs.create_reconstruction(s, s.get_one(User, job.owner_id), job, 1, video=True)
out["reconstruction"] = runner.run_reconstruction(rec.id)
out["reconstruction_id"] = rec.id
print(json.dumps(out))
"""


def test_run_without_nanopyx_and_ffmpeg_records_why(
    saft_env: Any, tiny_job_inputs: Any, tmp_path: Path
) -> None:
    from persistence import jobs
    from persistence.db import session_scope
    from persistence.storage import Storage
    from persistence.tables import Iteration, Job, Reconstruction

    inputs = tiny_job_inputs(saft_env)
    ids = []
    with session_scope() as s:
        for edge in (inputs.edge_dataset_id, None):
            job = jobs.create_job(
                s,
                inputs.user,
                lr_dataset_id=inputs.lr_dataset_id,
                edge_dataset_id=edge,
                sr_model=inputs.sr_model_id,
                den_model=inputs.den_model_id,
                params={"iterations": 2, "tile": 16, "lr": 1e-4},
            )
            ids.append(job.id)
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "nanopyx.py").write_text("raise ImportError('no nanopyx on this server')\n")
    env = {
        **saft_env.env,
        "PYTHONPATH": os.pathsep.join([str(fake), saft_env.env["PYTHONPATH"]]),
        "IMAGEIO_FFMPEG_EXE": str(tmp_path / "no-ffmpeg"),
    }
    done = subprocess.run(
        [sys.executable, "-c", RUN, *ids],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out == {  # edge maps need no nanopyx: both jobs run, without metrics
        "with_edges": "succeeded",
        "without_edges": "succeeded",
        "reconstruction": "succeeded",
        "reconstruction_id": out["reconstruction_id"],
    }
    # One line per job, never a traceback per iteration.
    assert done.stderr.count("metrics unavailable") == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr

    with session_scope() as s:
        ok, failed = s.get_one(Job, ids[0]), s.get_one(Job, ids[1])
        rec = s.get_one(Reconstruction, out["reconstruction_id"])
        rse = s.scalars(select(Iteration.rse).where(Iteration.job_id == ok.id)).all()
    assert len(ok.notes) == 1 and ok.notes[0].startswith("metrics unavailable: nanopyx")
    assert "no nanopyx on this server" in ok.notes[0]
    assert rse == [None, None, None]
    assert failed.error is None and failed.notes == ok.notes
    assert rec.mp4_path is None and rec.tiff_path
    assert (Storage(saft_env.data_dir).resolve(rec.tiff_path)).is_file()
    assert len(rec.notes) == 1 and rec.notes[0].startswith("video unavailable: ffmpeg ")
    assert "no-ffmpeg" in rec.notes[0]
    job_log = (Storage(saft_env.data_dir).job_dir(ok.id) / "job.log").read_text()
    assert job_log.count("metrics unavailable") == 1
