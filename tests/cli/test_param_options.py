"""CLI parameter options are made from the spec: one per parameter in finetune, submit and
watch, parsed as the spec says (special 'auto', choices, flags)."""

from __future__ import annotations

from typing import Any

import click
import pytest
from click.testing import CliRunner

from saft_cli import client_commands
from saft_cli.main import finetune
from saft_cli.param_options import SaftOptions, saft_param_options
from saft_core.params import PRESET_PARAMS, SPEC_BY_NAME, SaftParams


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@pytest.mark.parametrize(
    "command", [finetune, client_commands.submit, client_commands.watch], ids=lambda c: c.name
)
def test_every_spec_parameter_is_an_option(command: click.Command) -> None:
    flags = {f for p in command.params for f in p.opts}
    missing = [p.name for p in PRESET_PARAMS if _flag(p.name) not in flags]
    assert not missing and "--preset" in flags
    out = CliRunner().invoke(command, ["--help"], terminal_width=200).output
    assert SPEC_BY_NAME["lr"].default_text() in out and "--windows-per-tile N|auto" in out


def _capture(local: bool, *args: str) -> Any:
    seen: dict[str, Any] = {}

    @click.command()
    @saft_param_options(local=local)
    def cmd(saft_options: SaftOptions) -> None:
        seen["options"] = saft_options

    result = CliRunner().invoke(cmd, list(args))
    return seen.get("options"), result


def test_only_given_options_are_passed_and_parsed_by_kind() -> None:
    opts, result = _capture(True, "--lr", "5e-4", "--sigma", "auto", "--windows-per-tile", "3")
    assert result.exit_code == 0, result.output
    assert opts == SaftOptions(None, {"lr": 5e-4, "sigma": "auto", "windows_per_tile": 3})
    opts, _ = _capture(True, "--preset", "adaptive", "--early-stop", "--windows-per-tile", "AUTO")
    assert opts.resolve("saft") == SaftParams.preset(
        "adaptive", early_stop=True, windows_per_tile=None
    )
    assert opts.wire() == {"early_stop": True, "windows_per_tile": "auto", "preset": "adaptive"}
    opts, _ = _capture(True, "--no-early-stop", "--sigma", "0.8")
    assert opts.given == {"early_stop": False, "sigma": 0.8}


def test_local_options_refuse_what_the_service_options_pass_on() -> None:
    _, result = _capture(True, "--background", "median")
    assert result.exit_code == 2 and "Invalid value" in result.output
    opts, result = _capture(False, "--background", "median", "--preset", "fast")
    assert result.exit_code == 0 and opts.wire() == {"background": "median", "preset": "fast"}
    opts, _ = _capture(False, "--windows-per-tile", "many")
    assert opts.given == {"windows_per_tile": "many"}  # the service's 422 names the field
    _, result = _capture(True, "--windows-per-tile", "many")
    assert result.exit_code == 1 and result.exception.field == "windows_per_tile"
