"""SAFT parameters: the one validated record of what a run was asked to do.

Defaults follow the authors' reference implementation. ``PRESETS["adaptive"]`` is this
project's schedule (docs/science.md shows why): more, smaller steps at a higher rate, weight
averaging, a warm-up, a weak rotation tie and a background map. ``validate`` raises
``InvalidParameterError`` naming the field, so the API and CLI report the same message.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from saft_core.errors import InvalidParameterError

Mode = Literal["saft", "wsf"]
Background = Literal["fit", "mean", "map"]

MAX_LR = 1e-3
MAX_ITERATIONS = 50
MAX_WARMUP = 10_000


@dataclass(frozen=True)
class SaftParams:
    """Parameters of one fine-tuning run (units: sigma in LR pixels, ksize in LR pixels)."""

    mode: Mode = "saft"
    iterations: int | None = None  # None -> 5 for SAFT, 3 for SAFT-WSF
    lr: float = 1e-5
    sigma: float | Literal["auto"] = 1.1
    ksize: int = 5
    continuity_level: float = 1.0
    sparse_level: float = 1.0
    consistency_level: float = 1.0
    seed: int = 0
    early_stop: bool = False
    # "fit": the degraded SR is matched to the denoised LR by a least-squares gain AND offset,
    # so camera offset and background are absorbed by the offset instead of being painted into
    # the SR output as haze. "mean": the reference implementation's mean matching (gain only).
    # "map": gain only, over a smooth background map estimated from the LR frames
    # (saft_core.background), so haze the network adds is penalised rather than absorbed.
    background: Background = "fit"
    tile: int = 64  # LR pixels per training tile side
    window: int = 5  # adjacent frames per training window
    # Random windows per tile in one iteration: 1 = the reference implementation; None = enough
    # to visit every frame about once (ceil(T / window)), T/5 times the compute per iteration.
    windows_per_tile: int | None = 1
    # Exponential moving average of the SR weights (0 = off, the reference). Checkpoints,
    # previews and metrics use the averaged weights: single small-batch steps at a high rate
    # scatter the weights, and their average is the stable estimate.
    ema: float = 0.0
    warmup: int = 0  # optimiser steps over which the rate ramps linearly up to ``lr``
    # Weight of the haze penalty: mean SR intensity where the LR stack shows nothing above its
    # background map (saft_core.background.empty_mask), relative to the pretrained output's
    # mean. 0 = off (the reference).
    haze_level: float = 0.0

    @property
    def n_iterations(self) -> int:
        if self.iterations is not None:
            return self.iterations
        return 3 if self.mode == "wsf" else 5

    def validate(self) -> SaftParams:
        """Return self if every field is in range, else raise InvalidParameterError(field=...)."""
        if self.mode not in ("saft", "wsf"):
            raise InvalidParameterError("mode must be 'saft' or 'wsf'", field="mode")
        if self.background not in ("fit", "mean", "map"):
            raise InvalidParameterError(
                "background must be 'fit' (gain and offset), 'mean' (reference mean matching) "
                "or 'map' (gain over an estimated background map)",
                field="background",
            )
        n = self.iterations
        if n is not None and (
            not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_ITERATIONS
        ):
            raise InvalidParameterError(
                f"iterations must be an integer from 1 to {MAX_ITERATIONS}, got {n!r}",
                field="iterations",
            )
        if not _finite(self.lr) or not 0 < self.lr <= MAX_LR:
            raise InvalidParameterError(
                f"lr must be in (0, {MAX_LR:g}]; larger steps destroy the pretrained "
                f"network, got {self.lr!r}",
                field="lr",
            )
        if self.sigma != "auto" and (not _finite(self.sigma) or self.sigma <= 0):
            raise InvalidParameterError(
                f"sigma must be a positive number of LR pixels or 'auto', got {self.sigma!r}",
                field="sigma",
            )
        k = self.ksize
        if not isinstance(k, int) or isinstance(k, bool) or k < 3 or k % 2 == 0 or k > 31:
            raise InvalidParameterError(
                f"ksize must be an odd integer from 3 to 31, got {k!r}", field="ksize"
            )
        for name in ("continuity_level", "sparse_level", "consistency_level", "haze_level"):
            v = getattr(self, name)
            if not _finite(v) or not 0 <= v <= 100:
                raise InvalidParameterError(
                    f"{name} must be a number from 0 to 100, got {v!r}", field=name
                )
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise InvalidParameterError(
                f"seed must be a non-negative integer, got {self.seed!r}", field="seed"
            )
        if not isinstance(self.tile, int) or not 16 <= self.tile <= 512:
            raise InvalidParameterError("tile must be an integer from 16 to 512", field="tile")
        if not isinstance(self.window, int) or not 3 <= self.window <= 15 or self.window % 2 == 0:
            raise InvalidParameterError(
                "window must be an odd integer from 3 to 15", field="window"
            )
        w = self.windows_per_tile
        if w is not None and (not isinstance(w, int) or isinstance(w, bool) or not 1 <= w <= 100):
            raise InvalidParameterError(
                "windows_per_tile must be an integer from 1 to 100 (or null for auto)",
                field="windows_per_tile",
            )
        if not _finite(self.ema) or not 0 <= self.ema < 1:
            raise InvalidParameterError(
                f"ema must be a number in [0, 1) (0 = off), got {self.ema!r}", field="ema"
            )
        wu = self.warmup
        if not isinstance(wu, int) or isinstance(wu, bool) or not 0 <= wu <= MAX_WARMUP:
            raise InvalidParameterError(
                f"warmup must be an integer number of steps from 0 to {MAX_WARMUP}, got {wu!r}",
                field="warmup",
            )
        return self

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> SaftParams:
        """Parameters of a named preset, with explicit ``overrides`` taking precedence."""
        if name not in PRESETS:
            raise InvalidParameterError(
                f"unknown preset {name!r}; use one of {', '.join(PRESETS)}", field="preset"
            )
        return cls(**{**PRESETS[name], **overrides}).validate()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the resolved iteration count (frozen into run records)."""
        d = asdict(self)
        d["iterations"] = self.n_iterations
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SaftParams:
        """Build from a JSON dict; unknown keys are an error, not silently dropped."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidParameterError(
                f"unknown parameter(s): {', '.join(unknown)}", field=unknown[0]
            )
        return cls(**data).validate()

    def with_(self, **changes: Any) -> SaftParams:
        return replace(self, **changes).validate()


# "reference": the authors' schedule (the dataclass defaults). "adaptive": 16x the optimiser
# steps of the reference per iteration (32-px tiles, 4 windows each) at lr 1e-3 with a
# 30-step warm-up and weight averaging; rotation tie at 0.1 (at 1 it holds the network to the
# pretrained output's artifacts); background map and haze penalty. Measured in
# docs/science.md.
PRESETS: dict[str, dict[str, Any]] = {
    "reference": {},
    "adaptive": {
        "lr": 1e-3,
        "tile": 32,
        "windows_per_tile": 4,
        "consistency_level": 0.1,
        "ema": 0.95,
        "warmup": 30,
        "background": "map",
        "haze_level": 0.3,
    },
}


def _finite(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
