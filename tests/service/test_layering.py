"""The package contract of docs/architecture.md, checked on the imports themselves."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imports(package: str) -> dict[str, set[str]]:
    """Every module each ``package/**/*.py`` imports (absolute names, lazy imports included)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        found[str(path.relative_to(ROOT))] = names
    return found


def test_api_imports_of_the_worker_are_message_sending_only() -> None:
    """The API reaches the worker only through ``worker.queue`` (sending, queue depth)."""
    bad = {
        path: sorted(
            n
            for n in names
            if n.startswith("worker.") and n != "worker.queue" and not n.startswith("worker.queue.")
        )
        for path, names in _imports("api").items()
    }
    assert {p: ns for p, ns in bad.items() if ns} == {}


def test_the_ast_scan_sees_worker_imports() -> None:
    """The scan above can fail: it does see the API's (allowed) ``worker.queue`` imports."""
    names = set().union(*_imports("api").values())
    assert "worker.queue" in names


def test_client_and_persistence_stay_light() -> None:
    """The client installs without torch/SQLAlchemy; persistence never imports torch."""
    heavy_client = {"torch", "numpy", "sqlalchemy", "persistence", "api", "worker"}
    for path, names in _imports("saft_client").items():
        assert not {n.split(".")[0] for n in names} & heavy_client, path
    for path, names in _imports("persistence").items():
        assert "torch" not in {n.split(".")[0] for n in names}, path
