"""SAFT parameters: the one declaration (``SPEC``) every layer derives its view from.

Each ``Param`` states a field's type, range, choices, null and special values, unit, help and
its value in each preset. ``SaftParams`` (the validated record of a run), ``PRESETS``, the API's
``ParamsIn`` and ``GET /v1/params``, the CLI options and the parameter table of
docs/service-contract.md (``scripts/gen_param_docs.py``) are built from it, so a new
parameter is one ``Param`` here. Pure python: no web or torch imports.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, make_dataclass
from typing import Any, Literal, get_args

from saft_core.errors import InvalidParameterError

# "reference": the authors' schedule. "adaptive": 16x the optimiser steps of the reference per
# iteration (32-px tiles, 4 windows each) at lr 1e-3 with a 30-step warm-up and weight
# averaging; rotation tie at 0.1 (at 1 it holds the network to the pretrained output's
# artifacts); background map and haze penalty. Measured in docs/science.md.
PRESET_NAMES: tuple[str, ...] = ("reference", "adaptive")
DEFAULT_PRESET = "adaptive"  # what an unnamed preset means, in the API, both CLIs and defaults

# Typing aliases of the two choice fields; SPEC reads its choices from them.
Mode = Literal["saft", "wsf"]
Background = Literal["fit", "mean", "map", "structure"]


@dataclass(frozen=True)
class Param:
    """One SAFT parameter: how it is typed, bounded, explained and set by each preset."""

    name: str
    kind: type  # int, float, bool or str (str with ``choices``)
    value: Any  # its value in every preset that ``presets`` does not name
    help: str  # one paragraph, the why; range and defaults are added where shown
    presets: Mapping[str, Any] = field(default_factory=dict)  # preset name -> different value
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    max_exclusive: bool = False
    odd: bool = False  # integers that must be odd (kernel and window sizes)
    choices: tuple[str, ...] | None = None
    nullable: bool = False
    null_means: str | None = None
    special: tuple[str, ...] = ()  # strings accepted in place of a number
    special_is_null: bool = False  # the special string is stored as null ("auto" windows)
    unit: str | None = None
    advanced: bool = False
    run_level: bool = False  # chosen per run beside the preset (mode), not a preset value

    @property
    def default(self) -> Any:
        """The value used when neither the user nor a preset names one."""
        return self.in_preset(DEFAULT_PRESET)

    def in_preset(self, preset: str) -> Any:
        return self.presets.get(preset, self.value)

    @property
    def type_name(self) -> str:
        """Type as clients see it: "float" | "int" | "bool" | "choice" | "string"."""
        if self.choices is not None:
            return "choice"
        return {float: "float", int: "int", bool: "bool"}.get(self.kind, "string")

    def normalise(self, value: Any) -> Any:
        """``value`` as stored: a special string that means null becomes None."""
        if self.special_is_null and isinstance(value, str) and value.lower() in self.special:
            return None
        return value

    def check(self, value: Any) -> None:
        """Raise InvalidParameterError(field=name) unless ``value`` is allowed."""
        if value is None and self.nullable:
            return
        if isinstance(value, str) and value in self.special:
            return
        ok = False
        if self.choices is not None:
            ok = isinstance(value, str) and value in self.choices
        elif self.kind is bool:
            ok = isinstance(value, bool)
        elif self.kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool) and self._in_range(value)
            ok = ok and (not self.odd or value % 2 == 1)
        elif self.kind is float:
            ok = (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and math.isfinite(value)
                and self._in_range(value)
            )
        else:
            ok = isinstance(value, str)
        if not ok:
            raise InvalidParameterError(f"{self.name} must be {self.allowed()}, got {value!r}",
                                        field=self.name)  # fmt: skip

    def _in_range(self, v: float) -> bool:
        if self.min is not None and (v <= self.min if self.min_exclusive else v < self.min):
            return False
        return self.max is None or not (v >= self.max if self.max_exclusive else v > self.max)

    def allowed(self, with_null: bool = True) -> str:
        """What the field accepts, in words: ``in (0, 1e-3]``, ``an odd integer from 3 to 31``;
        ``with_null=False`` leaves null out (the CLI, where an unset option is the null)."""
        if self.choices is not None:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.kind is bool:
            text = "true or false"
        elif self.kind is int:
            text = f"an {'odd ' if self.odd else ''}integer " + self.range_text()
        elif self.kind is float:
            text = "in " + self.range_text()
        else:
            text = "a string"
        if self.unit and self.kind in (int, float):
            text += f" {self.unit}"
        if self.special:
            text += " or " + " or ".join(repr(s) for s in self.special)
        if with_null and self.nullable and not self.special_is_null:
            text += f" (or null: {self.null_means})"
        return text

    def range_text(self) -> str:
        """``(0, 1e-3]`` for floats; ``from 1 to 50`` / ``>= 0`` for integers."""
        lo, hi = shown(self.min), shown(self.max)
        if self.kind is int and not (self.min_exclusive or self.max_exclusive):
            if self.min is not None and self.max is not None:
                return f"from {lo} to {hi}"
            return f">= {lo}" if self.min is not None else f"<= {hi}"
        left = "(" if self.min_exclusive or self.min is None else "["
        right = ")" if self.max_exclusive or self.max is None else "]"
        lo = "-inf" if self.min is None else lo
        hi = "inf" if self.max is None else hi
        return f"{left}{lo}, {hi}{right}"

    def default_text(self) -> str:
        """``[default: 1e-5, adaptive preset: 0.001]``: the default and every preset's other
        value (CLI help and docs)."""
        text = f"default: {self._shown_value(self.default)}"
        for preset in PRESET_NAMES:
            if self.in_preset(preset) != self.default:
                text += f", {preset} preset: {self._shown_value(self.in_preset(preset))}"
        return f"[{text}]"

    def _shown_value(self, value: Any) -> str:
        if value is None:
            return self.special[0] if self.special_is_null else str(self.null_means)
        if isinstance(value, bool):
            return str(value).lower()
        return shown(value)


def shown(value: Any) -> str:
    """A value as people write it: 1e-5 (not 1e-05), 0.001, 64, fit."""
    if not isinstance(value, float):
        return str(value)
    mantissa, e, exponent = f"{value:g}".partition("e")
    return f"{mantissa}e{int(exponent)}" if e else mantissa


_LEVEL = {"kind": float, "min": 0.0, "max": 100.0}

SPEC: tuple[Param, ...] = (
    Param(
        "mode", str, "saft", choices=get_args(Mode), run_level=True,
        help="'saft' fine-tunes on the LR stack alone; 'wsf' (SAFT-WSF) adds an SMLM image of "
        "the same field as a weak supervision. Chosen per run, beside the preset.",
    ),
    Param(
        "iterations", int, None, min=1, max=50, nullable=True,
        null_means="5 for mode saft, 3 for wsf",
        help="Fine-tuning iterations; each writes a checkpoint, a preview and its metrics.",
    ),
    Param(
        "lr", float, 1e-5, presets={"adaptive": 1e-3}, min=0.0, min_exclusive=True, max=1e-3,
        help="Learning rate of the Adam optimiser (not the LR stack). Larger steps than 1e-3 "
        "destroy the pretrained network.",
    ),
    Param(
        "sigma", float, 1.1, presets={"adaptive": "auto"}, min=0.0, min_exclusive=True,
        max=20.0, special=("auto",),
        unit="LR px",
        help="Gaussian sigma of the RSF that degrades the SR output to the LR grid, or 'auto' "
        "to estimate it from the data.",
    ),
    Param(
        "ksize", int, 5, min=3, max=31, odd=True, unit="LR px", advanced=True,
        help="Side of the RSF kernel.",
    ),
    Param(
        "continuity_level", **_LEVEL, value=1.0, advanced=True,
        help="Weight of the spatiotemporal continuity loss.",
    ),
    Param(
        "sparse_level", **_LEVEL, value=1.0, advanced=True,
        help="Weight of the sparsity (L1) loss on the SR output.",
    ),
    Param(
        "consistency_level", **_LEVEL, value=1.0, presets={"adaptive": 0.1}, advanced=True,
        help="Weight of the rotation-consistency tie to the pretrained output; at 1 it also "
        "holds the network to that output's artifacts.",
    ),
    Param(
        "seed", int, 0, min=0, max=2**32 - 1, advanced=True,
        help="Random seed of the training windows and network initialisation.",
    ),
    Param(
        "early_stop", bool, False,
        help="Stop once an iteration is recommended (the loss has converged).",
    ),
    Param(
        "background", str, "map", presets={"reference": "mean"}, choices=get_args(Background),
        advanced=True,
        help="How the degraded SR is matched to the denoised LR: 'fit' (gain and offset), "
        "'mean' (the reference's mean matching, gain only), 'map' (gain over a smooth "
        "background map estimated from the LR frames) or 'structure' (gain fitted on the "
        "in-focus scales only: both images lose what lies beyond 2.5 PSF sigmas). 'fit' "
        "absorbs camera offset and background instead of painting them into the SR as haze; "
        "'map' penalises haze the network adds; 'structure' also ignores out-of-focus light.",
    ),
    Param(
        "tile", int, 64, presets={"adaptive": 32}, min=16, max=512, unit="LR px",
        advanced=True, help="Side of a training tile.",
    ),
    Param(
        "window", int, 5, min=3, max=15, odd=True, unit="frames", advanced=True,
        help="Adjacent frames in one training window.",
    ),
    Param(
        "windows_per_tile", int, 1, presets={"adaptive": 4}, min=1, max=100, nullable=True,
        null_means="auto: enough windows to visit every frame about once (ceil(T / window))",
        special=("auto",), special_is_null=True, advanced=True,
        help="Random windows per training tile in one iteration. 1 is the reference; 'auto' "
        "(stored as null) visits every frame about once, at ceil(T / window) times the compute "
        "per iteration.",
    ),
    Param(
        "ema", float, 0.0, presets={"adaptive": 0.95}, min=0.0, max=1.0, max_exclusive=True,
        advanced=True,
        help="Decay of the exponential moving average of the SR weights (0 = off). "
        "Checkpoints, previews and metrics use the averaged weights: single small-batch steps "
        "at a high rate scatter the weights, and their average is the stable estimate.",
    ),
    Param(
        "warmup", int, 0, presets={"adaptive": 30}, min=0, max=10_000, unit="steps",
        advanced=True,
        help="Optimiser steps over which the learning rate ramps linearly up to lr.",
    ),
    Param(
        "haze_level", **_LEVEL, value=0.0, presets={"adaptive": 0.3}, advanced=True,
        help="Weight of the haze penalty: mean SR intensity where the LR stack shows nothing "
        "above its background map, relative to the pretrained output's mean (0 = off).",
    ),
)  # fmt: skip

SPEC_BY_NAME: dict[str, Param] = {p.name: p for p in SPEC}
# The preset-settable parameters (wire, CLI options, /v1/params); ``mode`` is chosen per run.
PRESET_PARAMS: tuple[Param, ...] = tuple(p for p in SPEC if not p.run_level)
# Every preset's full values (run-level fields left out).
PRESETS: dict[str, dict[str, Any]] = {
    name: {p.name: p.in_preset(name) for p in PRESET_PARAMS} for name in PRESET_NAMES
}


class _SaftParamsBase:
    """Methods of ``SaftParams``; its fields are made from ``SPEC`` below."""

    mode: str
    iterations: int | None

    def __post_init__(self) -> None:
        for p in SPEC:
            value = getattr(self, p.name)
            if p.normalise(value) is not value:
                object.__setattr__(self, p.name, p.normalise(value))

    @property
    def n_iterations(self) -> int:
        if self.iterations is not None:
            return self.iterations
        return 3 if self.mode == "wsf" else 5

    def validate(self) -> SaftParams:
        """Return self if every field is allowed by SPEC, else raise
        InvalidParameterError(field=...)."""
        for p in SPEC:
            p.check(getattr(self, p.name))
        return self  # type: ignore[return-value]

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> SaftParams:
        """Parameters of a named preset, with explicit ``overrides`` taking precedence."""
        if name not in PRESETS:
            raise InvalidParameterError(
                f"unknown preset {name!r}; use one of {', '.join(PRESETS)}", field="preset"
            )
        return cls.from_dict({**PRESETS[name], **overrides})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the resolved iteration count (frozen into run records)."""
        d = asdict(self)  # type: ignore[call-overload]
        d["iterations"] = self.n_iterations
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SaftParams:
        """Build from a JSON dict; unknown keys are an error, not silently dropped."""
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidParameterError(
                f"unknown parameter(s): {', '.join(unknown)}", field=unknown[0]
            )
        return cls(**data).validate()


def _annotation(p: Param) -> Any:
    kind: Any = Literal[p.choices] if p.choices else p.kind  # type: ignore[valid-type]
    if p.special:
        kind = kind | Literal[p.special]  # type: ignore[valid-type]
    return kind | None if p.nullable else kind


SaftParams = make_dataclass(
    "SaftParams",
    [(p.name, _annotation(p), field(default=p.default)) for p in SPEC],
    bases=(_SaftParamsBase,),
    frozen=True,
)
SaftParams.__module__ = __name__  # pickling and reprs find it here
SaftParams.__doc__ = (
    "Parameters of one fine-tuning run, one field per ``SPEC`` entry (sigma, ksize and tile in "
    "LR pixels); unnamed fields take the DEFAULT_PRESET's values."
)


def markdown_table() -> str:
    """The parameter table of docs/service-contract.md (between its param-table markers)."""
    head = ["field", "accepts", *(f"`{n}`" for n in PRESET_NAMES), "what it does"]
    rows = [
        "| " + " | ".join(head) + " |",
        "|" + " --- |" * len(head),
        "| `preset` | "
        + " \\| ".join(f'`"{n}"`' for n in PRESET_NAMES)
        + f" | | | null = `{DEFAULT_PRESET}`; explicit fields win over the preset's values |",
    ]
    for p in PRESET_PARAMS:
        values = [f"`{_json(p.in_preset(n))}`" for n in PRESET_NAMES]
        rows.append(f"| `{p.name}` | {_md(p.allowed())} | {' | '.join(values)} "
                    f"| {_md(p.help)} |")  # fmt: skip
    return "\n".join(rows) + "\n"


def _json(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return f'"{value}"' if isinstance(value, str) else shown(value)


def _md(text: str) -> str:
    return text.replace("|", "\\|")
