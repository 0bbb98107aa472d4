"""Validate an uploaded network checkpoint by loading it, in a subprocess.

Loading needs torch, which the API process never imports (memory, start-up time, and a
crash in native code must not take the API down). A child ``python -c`` runs
``saft_core.networks.load_model(path, kind)`` (``torch.load(weights_only=True)``: a model
file cannot run code) and prints one marked JSON line, which we parse.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
MARKER = "SAFT-MODEL-CHECK "
TIMEOUT_S = 120.0

_CHILD = r"""
import json, sys

def check(spec, kind):
    from saft_core.errors import SaftError
    try:
        from saft_core.networks import load_model, model_summary
        return {"ok": True, "summary": model_summary(load_model(spec, kind))}
    except SaftError as exc:
        return {"ok": False, "error": exc.message}
    except Exception as exc:
        return {"ok": False, "error": f"not a loadable {kind.upper()} checkpoint "
                f"({type(exc).__name__})"}

args = sys.argv[1:]
out = [check(args[i], args[i + 1]) for i in range(0, len(args), 2)]
print("SAFT-MODEL-CHECK " + json.dumps(out), flush=True)
"""


@dataclass
class CheckResult:
    ok: bool
    summary: dict[str, Any] | None = None  # kind, config, parameters
    error: str | None = None


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["CUDA_VISIBLE_DEVICES"] = ""  # validation is a CPU job; never grab a worker's GPU
    return env


def check_models(specs: list[tuple[str, str]], timeout: float = TIMEOUT_S) -> list[CheckResult]:
    """Load each ``(path or 'default', kind)`` in one child process; blocking."""
    argv = [sys.executable, "-c", _CHILD]
    for spec, kind in specs:
        argv += [spec, kind]
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_env(),
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        msg = f"the model file could not be loaded within {timeout:g} s"
        return [CheckResult(False, error=msg) for _ in specs]
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(MARKER):
            try:
                rows = json.loads(line[len(MARKER) :])
            except ValueError:
                break
            return [CheckResult(bool(r.get("ok")), r.get("summary"), r.get("error")) for r in rows]
    # No answer: the child crashed (out of memory, a native error in torch...).
    msg = f"the model file could not be loaded (checker exited with {proc.returncode})"
    return [CheckResult(False, error=msg) for _ in specs]


def check_model(path: Path, kind: str, timeout: float = TIMEOUT_S) -> CheckResult:
    return check_models([(str(path), kind)], timeout)[0]


_defaults: dict[str, dict[str, Any] | None] | None = None
_defaults_at = 0.0
_defaults_lock = threading.Lock()
_RETRY_S = 300.0


def default_summaries() -> dict[str, dict[str, Any] | None]:
    """Kind/config/parameters of the shipped default SR and DEN (cached; None if unknown)."""
    global _defaults, _defaults_at
    with _defaults_lock:
        fresh = time.monotonic() - _defaults_at < _RETRY_S
        if _defaults is not None and (fresh or all(_defaults.values())):
            return _defaults
        sr, den = check_models([("default", "sr"), ("default", "den")], timeout=60)
        _defaults = {"sr": sr.summary, "den": den.summary}
        _defaults_at = time.monotonic()
        return _defaults
