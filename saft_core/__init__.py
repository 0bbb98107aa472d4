"""saft_core: the SAFT science as a library (numpy/torch; no web or database imports).

The public surface is loaded lazily so that light users (the API validating parameters)
never import torch.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Stack": "saft_core.io",
    "read_stack": "saft_core.io",
    "inspect_tiff": "saft_core.io",
    "write_stack": "saft_core.io",
    "StackWriter": "saft_core.io",
    "write_mp4": "saft_core.video",
    "write_preview": "saft_core.video",
    "compute_edges": "saft_core.edges",
    "artifact_metrics": "saft_core.metrics",
    "estimate_rsf_sigma": "saft_core.metrics",
    "estimate_psf_sigma": "saft_core.psf",
    "stack_frc_resolution": "saft_core.resolution",
    "run_into": "saft_core.rundir",
    "load_model": "saft_core.networks",
    "save_checkpoint": "saft_core.networks",
    "SRConfig": "saft_core.networks",
    "DENConfig": "saft_core.networks",
    "SaftParams": "saft_core.params",
    "finetune": "saft_core.finetune",
    "IterationResult": "saft_core.finetune",
    "FinetuneSummary": "saft_core.finetune",
    "reconstruct": "saft_core.reconstruct",
    "recommend_iteration": "saft_core.recommend",
    "RunDir": "saft_core.rundir",
    "SaftError": "saft_core.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'saft_core' has no attribute {name!r}")


class _PublicSurface(types.ModuleType):
    """The package module: a public name always means the public callable, never a submodule.

    Importing a submodule (`import saft_core.finetune`) makes the import system set it as a
    package attribute, which would shadow the same-named function; such a set is dropped, so
    the name keeps resolving through `__getattr__`. The submodule stays in `sys.modules`
    (`importlib.import_module("saft_core.finetune")` reaches it).
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _PublicSurface
