"""Which torch device a run uses, and how it is reported in run records."""

from __future__ import annotations

import re

import torch

from saft_core.errors import InvalidParameterError

_CUDA = re.compile(r"^cuda(?::(\d+))?$")


def select_device(preference: str | torch.device | None = None) -> torch.device:
    """CUDA when available (or asked for), else the CPU; MPS is never chosen (not validated)."""
    if isinstance(preference, torch.device):
        preference = str(preference)
    pref = (preference or "auto").strip().lower()
    if pref == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if pref == "cpu":
        return torch.device("cpu")
    match = _CUDA.match(pref)
    if match is None:
        raise InvalidParameterError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {preference!r}", field="device"
        )
    if not torch.cuda.is_available():
        raise InvalidParameterError(
            f"device {preference!r} was requested but no CUDA GPU is available", field="device"
        )
    index = int(match.group(1) or 0)
    count = torch.cuda.device_count()
    if index >= count:
        raise InvalidParameterError(
            f"device {preference!r} does not exist: {count} CUDA GPU(s) visible", field="device"
        )
    return torch.device("cuda", index)


def describe_device(device: str | torch.device) -> str:
    """Human-readable device for run records, e.g. 'cuda:0 (NVIDIA A100)' or 'cpu (2 threads)'."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)
