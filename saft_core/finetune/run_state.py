"""Checkpoint and resume: everything a run must save after an iteration to continue exactly.

A checkpoint is a loadable SR model (the shown weights) whose ``saft`` entry carries the rest
of the state: optimisers, the trained weights when averaging, the DEN, sigma and records.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from saft_core.errors import InvalidParameterError
from saft_core.networks import TRAINING_CONDITION
from saft_core.params import SaftParams

if TYPE_CHECKING:
    from saft_core.finetune.run import TrainingRun

CHECKPOINT_FORMAT = "saft-checkpoint/1"


def checkpoint(run: TrainingRun, k: int, step_losses: dict[str, float]) -> dict[str, Any]:
    """A loadable SR checkpoint that also carries what resuming after k needs."""
    step = run.step
    saft: dict[str, Any] = {
        "iteration": k,
        "params": run.params.to_dict(),
        "sigma": step.sigma,
        "losses": dict(step_losses),
        "sr_optimizer": _cpu(run.opt.state_dict()),
    }
    if run.averaged is not None:  # the trained (not averaged) weights, for resuming
        saft["trained_state_dict"] = _cpu(run.model.state_dict())
    if step.den is not None:
        saft["den"] = {
            "kind": "den",
            "config": _config_dict(step.den),
            "state_dict": _cpu(step.den.state_dict()),
        }
        saft["den_optimizer"] = _cpu(step.den_opt.state_dict())
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "kind": "sr",
        "config": _config_dict(run.model),
        "state_dict": _cpu(run.shown.state_dict()),
        "saft": saft,
    }
    # A fine-tuned network keeps its parent's training sampling (deploying it checks it too).
    condition = getattr(run.model, "training_condition", None)
    if condition is not None:
        ckpt[TRAINING_CONDITION] = dict(condition)
    return ckpt


def restore(run: TrainingRun, ckpt: dict[str, Any]) -> int:
    """Load the state saved after an iteration into ``run``; returns that iteration's number."""
    saft = ckpt.get("saft")
    if not isinstance(saft, dict) or "sr_optimizer" not in saft:
        raise InvalidParameterError(
            "resume needs a checkpoint written by a SAFT run (iteration_NN.pth)",
            field="resume",
        )
    try:  # records from before a parameter existed mean its default
        saved = SaftParams.from_dict(dict(saft["params"])).to_dict()
    except InvalidParameterError:
        saved = None
    if saved != run.params.to_dict():
        raise InvalidParameterError(
            "resume checkpoint was made with other parameters than this run", field="resume"
        )
    if run.averaged is not None:
        run.averaged.load_state_dict(ckpt["state_dict"])
        run.model.load_state_dict(saft["trained_state_dict"])
    else:
        run.model.load_state_dict(ckpt["state_dict"])
    run.opt.load_state_dict(saft["sr_optimizer"])
    step = run.step
    if step.den is not None:
        step.den.load_state_dict(saft["den"]["state_dict"])
        step.den_opt.load_state_dict(saft["den_optimizer"])
    step.sigma = None if saft["sigma"] is None else float(saft["sigma"])
    k = int(saft["iteration"])
    run.steps_done = k * run.steps_per_iteration
    run.records = [dict(r) for r in saft.get("records", [])]
    return k


def load_checkpoint(resume: dict[str, Any] | str | Path) -> dict[str, Any]:
    """A checkpoint dict as given, or read from its file (tensors on the CPU)."""
    if isinstance(resume, dict):
        return resume
    return torch.load(resume, map_location="cpu", weights_only=True)


def _config_dict(model: nn.Module) -> dict[str, Any]:
    return asdict(model.config)


def _cpu(obj: Any) -> Any:
    """Deep copy of a (nested) state dict with every tensor on the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(v) for v in obj)
    return obj
