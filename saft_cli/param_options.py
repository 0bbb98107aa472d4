"""The SAFT parameter options of ``saft finetune``, ``saft submit`` and ``saft watch``, made
from ``saft_core.params.SPEC``: one option per parameter plus ``--preset``.

``local=True`` (finetune) checks choices and special values here; ``local=False`` (the service
commands) passes what it cannot parse to the service, whose 422 names the field.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import click

from saft_core.errors import InvalidParameterError
from saft_core.params import DEFAULT_PRESET, PRESET_NAMES, PRESET_PARAMS, Param, SaftParams


@dataclass(frozen=True)
class SaftOptions:
    """The parameter options given on the command line (the rest stay the preset's)."""

    preset: str | None = None
    given: dict[str, Any] = field(default_factory=dict)

    def resolve(self, mode: str) -> SaftParams:
        """The validated parameters of a local run: the preset's values, then the given ones."""
        return SaftParams.preset(self.preset or DEFAULT_PRESET, **self.given, mode=mode)

    def wire(self) -> dict[str, Any]:
        """``params`` of ``POST /v1/jobs``: the given values and the preset's name, if any."""
        return {**self.given, **({"preset": self.preset} if self.preset else {})}


def saft_param_options(*, local: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: adds ``--preset`` and one option per SPEC parameter; the command receives
    them as one ``saft_options: SaftOptions`` argument."""

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(f)
        def wrapper(**kwargs: Any) -> Any:
            given: dict[str, Any] = {}
            for p in PRESET_PARAMS:
                value = kwargs.pop(_dest(p), None)
                if value is not None:
                    given[p.name] = _parse_special(p, value, local) if p.special else value
            preset = kwargs.pop("param_preset", None)
            return f(saft_options=SaftOptions(preset, given), **kwargs)

        for p in reversed(PRESET_PARAMS):
            wrapper = _option(p, local)(wrapper)
        names = "|".join(PRESET_NAMES)
        return click.option(
            "--preset",
            "param_preset",
            type=click.Choice(PRESET_NAMES) if local else str,
            metavar=None if local else names,
            default=None,
            help="Named parameter set: 'reference' (the authors' schedule) or 'adaptive' (this "
            "project's, measured in docs/science.md); options given explicitly win over it "
            f"[default: {DEFAULT_PRESET}].",
        )(wrapper)

    return decorate


def _dest(p: Param) -> str:
    return f"param_{p.name}"  # apart from the commands' own names (``submit``'s LR argument)


def _option(p: Param, local: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    flag = "--" + p.name.replace("_", "-")
    summary = p.help.split(". ")[0].rstrip(".")  # the first sentence; docs show the rest
    text = f"{summary}. Allowed: {p.allowed(with_null=False)}. {p.default_text()}"
    if p.kind is bool:
        return click.option(f"{flag}/--no-{flag[2:]}", _dest(p), default=None, help=text)
    if p.choices is not None:
        kind: Any = click.Choice(p.choices) if local else str
        metavar = None if local else "|".join(p.choices)
    elif p.special:
        kind = str
        metavar = ("N" if p.kind is int else p.name.upper()) + "|" + "|".join(p.special)
    else:
        kind, metavar = p.kind, None
    return click.option(flag, _dest(p), type=kind, metavar=metavar, default=None, help=text)


def _parse_special(p: Param, text: str, local: bool) -> Any:
    """A number of ``p.kind`` or one of its special strings ('auto'); text that is neither is
    an error here (``local``) or left for the service to name."""
    if text.strip().lower() in p.special:
        return text.strip().lower()
    try:
        return p.kind(text)
    except ValueError:
        if local:
            raise InvalidParameterError(
                f"{p.name} must be {p.allowed()}, got {text!r}", field=p.name
            ) from None
        return text
