"""saft_core.capabilities against real failures: a nanopyx that cannot be imported and an
ffmpeg binary that does not exist, in a fresh interpreter (no mocks of the science)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
    for name in ("edges", "metrics"):
        assert caps[name]["available"] is False
        assert "nanopyx build is broken here" in caps[name]["reason"]
        assert "install nanopyx" in caps[name]["reason"]
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
