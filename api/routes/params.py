"""/v1/params: the SAFT parameter spec, for forms and clients that build their inputs from it.

Public (no API key), like /openapi.json: it describes the service, it holds no user data, and
the dashboard can build its form before the user has signed in. ``mode`` is left out: it is
chosen per job beside the preset (``JobCreate.mode``), not a preset value.
"""

from __future__ import annotations

from fastapi import APIRouter

from api.schemas import ParamFieldOut, ParamSpecOut
from saft_core.params import DEFAULT_PRESET, PRESET_PARAMS, PRESETS

router = APIRouter(prefix="/v1/params", tags=["params"])


@router.get("", response_model=ParamSpecOut, summary="Every SAFT parameter and preset")
def get_params() -> ParamSpecOut:
    """Fields in spec order with range, choices, unit and help; each preset's full values."""
    return ParamSpecOut(
        default_preset=DEFAULT_PRESET,
        presets={name: dict(values) for name, values in PRESETS.items()},
        fields=[
            ParamFieldOut(
                name=p.name,
                type=p.type_name,  # type: ignore[arg-type]
                default=p.default,
                min=p.min,
                max=p.max,
                min_exclusive=p.min_exclusive,
                max_exclusive=p.max_exclusive,
                choices=list(p.choices) if p.choices is not None else None,
                nullable=p.nullable,
                null_means=p.null_means,
                special=list(p.special) or None,
                unit=p.unit,
                help=p.help,
                advanced=p.advanced,
            )
            for p in PRESET_PARAMS
        ],
    )
