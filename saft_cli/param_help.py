"""Help text for SAFT parameter options, read from ``SaftParams`` and ``PRESETS``.

Both ``saft finetune`` (local) and ``saft submit``/``saft watch`` (service) state defaults and
preset values; reading them from the one source keeps either help from drifting.
"""

from __future__ import annotations

from typing import Any

from saft_core.params import PRESETS, SaftParams


def default_help(name: str) -> str:
    """``[default: 1e-5, adaptive preset: 0.001]``: the reference value and every preset's
    different one."""
    default = SaftParams.__dataclass_fields__[name].default
    text = f"default: {_shown(default)}"
    for preset, values in PRESETS.items():
        if name in values and values[name] != default:
            text += f", {preset} preset: {_shown(values[name])}"
    return f"[{text}]"


def _shown(value: Any) -> str:
    if value is None:
        return "auto"
    if not isinstance(value, float):
        return str(value)
    mantissa, e, exponent = f"{value:g}".partition("e")
    return f"{mantissa}e{int(exponent)}" if e else mantissa  # 1e-5, not 1e-05
