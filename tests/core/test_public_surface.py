"""The `from saft_core import ...` surface matches docs/architecture.md in any import order."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _documented() -> dict[str, str]:
    """{name: "function"|"class"} from the "saft_core public surface" list of the docs."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## saft_core public surface", 1)[1].split("\n## ", 1)[0]
    kinds: dict[str, str] = {}
    for kind, block in re.findall(r"^- (functions|classes): (.*?\.)$", section, re.M | re.S):
        for name in re.findall(r"`(\w+)`", block):
            kinds[name] = "function" if kind == "functions" else "class"
    assert kinds, "no public-surface list found in docs/architecture.md"
    return kinds


def _run(code: str) -> dict:
    """Run code in a fresh interpreter (import state is the point) and read its JSON output."""
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


_PROBE = """
import importlib, inspect, json, sys
{pre}
import saft_core
names = {names!r}
kinds = {{}}
for name in names:
    obj = getattr(importlib.import_module("saft_core"), name)
    exec(f"from saft_core import {{name}} as imported")
    assert imported is obj, name
    kinds[name] = ("class" if inspect.isclass(obj) else
                   "function" if inspect.isfunction(obj) else type(obj).__name__)
print(json.dumps(kinds))
"""


def test_docs_list_matches_all() -> None:
    import saft_core

    assert sorted(_documented()) == sorted(saft_core.__all__)


@pytest.mark.parametrize("submodules_first", [False, True])
def test_public_names_are_the_documented_callables(submodules_first: bool) -> None:
    documented = _documented()
    pre = ""
    if submodules_first:
        # the submodules that share a name with a public callable, imported the usual ways
        pre = "import saft_core.finetune, saft_core.reconstruct\nfrom saft_core import params"
    kinds = _run(_PROBE.format(pre=pre, names=sorted(documented)))
    assert kinds == documented


def test_submodule_stays_reachable() -> None:
    import importlib

    import saft_core

    module = importlib.import_module("saft_core.finetune")
    assert module.__name__ == "saft_core.finetune"
    assert saft_core.finetune is not module and callable(saft_core.finetune)


def test_params_does_not_import_torch() -> None:
    code = (
        "import json, sys\nimport saft_core.params\nfrom saft_core import SaftParams\n"
        "SaftParams()\nprint(json.dumps({'torch': 'torch' in sys.modules}))"
    )
    assert _run(code) == {"torch": False}
