"""One worker per GPU: --gpus/--device mapped to worker devices and CUDA_VISIBLE_DEVICES pins.

The mapping is pure and tested for every input kind on this CPU-only machine; the commands
are run for real where they must refuse (no GPU here) before starting anything.
"""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from saft_cli.service_commands import (
    _WorkerSupervisor,
    check_device,
    count_gpus,
    pin_env,
    worker_argv,
    worker_devices,
)
from saft_core.errors import InvalidParameterError


@pytest.mark.parametrize(
    ("spec", "visible", "expected"),
    [
        ("all", 0, ["cpu"]),  # no GPU: one CPU worker
        ("all", 1, ["cuda:0"]),
        ("ALL", 3, ["cuda:0", "cuda:1", "cuda:2"]),
        ("0,1", 2, ["cuda:0", "cuda:1"]),
        (" 1 ", 2, ["cuda:1"]),
        ("1, 0", 4, ["cuda:1", "cuda:0"]),
    ],
)
def test_worker_devices(spec: str, visible: int, expected: list[str]) -> None:
    assert worker_devices(spec, visible) == expected


@pytest.mark.parametrize(
    ("spec", "visible", "message"),
    [
        ("0,0", 2, "lists GPU 0 twice"),
        ("2", 2, "no GPU 2 (2 GPU(s) visible)"),
        ("0,1", 0, "no GPU 0 (no CUDA GPU is visible)"),
        ("gpu0", 1, "must be 'all' or GPU indices"),
        ("", 1, "must be 'all' or GPU indices"),
        ("0,", 2, "must be 'all' or GPU indices"),
        ("-1", 2, "must be 'all' or GPU indices"),
        ("cuda:0", 1, "must be 'all' or GPU indices"),
    ],
)
def test_worker_devices_refuses(spec: str, visible: int, message: str) -> None:
    with pytest.raises(InvalidParameterError, match=re.escape(message)) as err:
        worker_devices(spec, visible)
    assert err.value.field == "gpus"


@pytest.mark.parametrize(
    ("device", "visible", "expected"),
    [("cpu", 0, "cpu"), ("cuda", 1, "cuda:0"), ("CUDA:1", 2, "cuda:1"), (" cuda:3 ", 4, "cuda:3")],
)
def test_check_device(device: str, visible: int, expected: str) -> None:
    assert check_device(device, visible) == expected


@pytest.mark.parametrize(
    ("device", "visible", "message"),
    [
        ("cuda:1", 1, "1 GPU(s) visible"),
        ("cuda:0", 0, "no CUDA GPU is visible"),
        ("cuda", 0, "no CUDA GPU is visible"),
        ("gpu:0", 4, "must be 'cpu', 'cuda' or 'cuda:N'"),
        ("cuda:-1", 4, "must be 'cpu', 'cuda' or 'cuda:N'"),
        ("mps", 4, "must be 'cpu', 'cuda' or 'cuda:N'"),
    ],
)
def test_check_device_refuses(device: str, visible: int, message: str) -> None:
    with pytest.raises(InvalidParameterError, match=re.escape(message)):
        check_device(device, visible)


@pytest.mark.parametrize(
    ("device", "cuda_visible_devices", "expected"),
    [
        ("cpu", None, {"SAFT_DEVICE": "cpu"}),
        ("cuda:0", None, {"CUDA_VISIBLE_DEVICES": "0", "SAFT_DEVICE": "cuda:0"}),
        ("cuda:1", None, {"CUDA_VISIBLE_DEVICES": "1", "SAFT_DEVICE": "cuda:0"}),
        # Indices count the visible GPUs: under "2,3", cuda:1 is physical GPU 3.
        ("cuda:1", "2,3", {"CUDA_VISIBLE_DEVICES": "3", "SAFT_DEVICE": "cuda:0"}),
        (
            "cuda:0",
            "GPU-8f1e,GPU-77aa",
            {"CUDA_VISIBLE_DEVICES": "GPU-8f1e", "SAFT_DEVICE": "cuda:0"},
        ),
    ],
)
def test_pin_env(device: str, cuda_visible_devices: str | None, expected: dict[str, str]) -> None:
    assert pin_env(device, cuda_visible_devices) == expected


@pytest.mark.parametrize(("device", "cuda_visible_devices"), [("cuda:2", "2,3"), ("cuda:0", "")])
def test_pin_env_outside_the_visible_gpus(device: str, cuda_visible_devices: str) -> None:
    with pytest.raises(ValueError, match="not in CUDA_VISIBLE_DEVICES"):
        pin_env(device, cuda_visible_devices)


def test_each_worker_runs_one_job_at_a_time_in_its_own_pinned_process() -> None:
    argv = worker_argv("gpu", "w@h")
    assert argv[argv.index("--concurrency") + 1] == "1"
    assert argv[argv.index("--pool") + 1] == "solo"
    sup = _WorkerSupervisor("gpu", "w@h", pin_env("cuda:1", None))
    assert sup.env["CUDA_VISIBLE_DEVICES"] == "1" and sup.env["SAFT_DEVICE"] == "cuda:0"


def test_count_gpus_honours_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # hides every GPU, on any machine
    assert count_gpus() == 0


def test_registry_device_names_the_pin(monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.heartbeat import worker_device

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert worker_device("cuda:0 (NVIDIA H200)") == "cuda:0 (NVIDIA H200), CUDA_VISIBLE_DEVICES=3"
    assert worker_device("cpu (2 threads)") == "cpu (2 threads)"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert worker_device("cuda:1 (NVIDIA H200)") == "cuda:1 (NVIDIA H200)"


def _saft(*args: str) -> tuple[int, str]:
    from saft_cli.main import _register_service_commands, cli

    _register_service_commands()
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["worker", "--device", "gpu0"], "--device must be 'cpu', 'cuda' or 'cuda:N', got 'gpu0'"),
        (["worker", "--device", "cuda:0", "--gpu", "0"], "give --device or --gpu, not both"),
        (["serve", "--gpus", "0,x"], "--gpus must be 'all' or GPU indices"),
        (["serve", "--gpus", "all", "--workers", "2"], "give --gpus or --workers, not both"),
    ],
)
def test_commands_refuse_bad_devices_with_exit_2(args: list[str], message: str) -> None:
    code, output = _saft(*args)
    assert code == 2, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], output


def test_worker_on_a_gpu_this_machine_lacks_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU visible, even on a GPU machine
    code, output = _saft("worker", "--device", "cuda:0")
    assert code == 2
    assert output.strip() == "saft: error (device): --device cuda:0: no CUDA GPU is visible"
