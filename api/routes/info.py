"""GET /v1/info: the service as an admin sees it (admins only: it names hosts and versions).

The API process never imports torch, so GPUs, torch/CUDA builds and optional parts come from
the workers' registry rows (what each worker probed at start); packages are the API's own.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import SettingsDep, UserDep
from api.problems import Problem, problem_responses
from persistence.diagnostics import service_report
from saft_core.capabilities import NAMES

router = APIRouter(prefix="/v1", tags=["info"], responses=problem_responses(401))


@router.get(
    "/info",
    summary="Versions, database/broker reachability, workers with their devices and parts",
    responses={
        200: {
            "description": "python and packages of the API process; `data_dir`, `database` "
            "and `broker` with `error` null when fine; `workers` (every registry row, `alive` "
            "within SAFT_STALE_AFTER_S) with device, GPUs, torch/CUDA/cuDNN and capabilities; "
            "`parts`: for edges/metrics/video/device, the live workers that have it"
        },
        **problem_responses(403),
    },
)
def info(user: UserDep, settings: SettingsDep) -> dict[str, Any]:
    """Sync on purpose: the probes block (short timeouts) and run in the thread pool."""
    if not user.is_admin:
        raise Problem(403, "GET /v1/info is for admin users", slug="forbidden")
    report = service_report(settings)
    live = [w for w in report["workers"] if w["alive"]]
    report["parts"] = {
        name: [w["id"] for w in live if w["capabilities"].get(name, {}).get("available")]
        for name in NAMES
    }
    report["gpus"] = [{"worker": w["id"], **gpu} for w in live for gpu in w["gpus"]]
    return report
