"""Print pip constraints pinning each direct dependency (and dev tool) to its declared lower bound.

CI installs the project with these pins in a second venv, so the lower bounds in pyproject.toml
are tested rather than hoped for. torch is left out: its oldest build is a multi-GB CUDA download.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import tomllib

UNPINNED = {"torch"}  # scripts/setup.sh's CPU build stays
_REQ = re.compile(r"^\s*([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*(.*)$")


def lower_bounds(pyproject: Path, extras: tuple[str, ...] = ("dev",)) -> dict[str, str]:
    """Map each requirement name to the version after its ``>=`` (none without one)."""
    project = tomllib.loads(pyproject.read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    pins: dict[str, str] = {}
    for req in reqs:
        match = _REQ.match(req.split(";")[0])
        if match is None:
            raise SystemExit(f"cannot parse requirement {req!r}")
        name, _, spec = match.groups()
        low = re.search(r">=\s*([0-9][^,\s]*)", spec)
        if low is None:
            raise SystemExit(f"requirement {req!r} declares no lower bound")
        if name.lower() not in UNPINNED:
            pins[name.lower()] = low.group(1)
    return pins


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    for name, version in lower_bounds(
        root / "pyproject.toml", tuple(sys.argv[1:]) or ("dev",)
    ).items():
        print(f"{name}=={version}")
