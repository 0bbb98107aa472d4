"""Regenerate the parameter tables of the docs from ``saft_core.params.SPEC``.

``python scripts/gen_param_docs.py`` rewrites the text between the ``param-table`` markers of
each file in ``DOCS``; ``--check`` only reports drift (exit 1), as tests/core/test_params.py does.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from saft_core.params import markdown_table  # noqa: E402

DOCS = (REPO / "docs" / "service-contract.md",)
START = "<!-- param-table:start (generated: python scripts/gen_param_docs.py) -->"
END = "<!-- param-table:end -->"
_BLOCK = re.compile(re.escape(START) + r"\n.*?" + re.escape(END), re.S)


def regenerated(text: str) -> str:
    """``text`` with every marked block replaced by the current table."""
    return _BLOCK.sub(lambda _: f"{START}\n{markdown_table()}{END}", text)


def main(argv: list[str]) -> int:
    check = argv == ["--check"]
    drifted = []
    for path in DOCS:
        text = path.read_text()
        if START not in text:
            continue
        new = regenerated(text)
        if new != text:
            drifted.append(path.relative_to(REPO))
            if not check:
                path.write_text(new)
    verb = "out of date" if check else "regenerated"
    for path in drifted:
        print(f"{path}: parameter table {verb}")
    return 1 if check and drifted else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
