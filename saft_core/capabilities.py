"""What this process can do: the optional parts (nanopyx, ffmpeg) and the compute device.

Light on purpose (no torch, nanopyx or ffmpeg at import time): the API and ``saft doctor``
import it, and workers report ``probe().to_dict()`` at start so the API can refuse a job
that no live worker could run. Each part is probed for real (imported, run), so a broken
install reads as unavailable with the reason, not as present.
"""

from __future__ import annotations

import functools
import subprocess
from dataclasses import asdict, dataclass
from importlib import metadata
from typing import Any

FFMPEG_TIMEOUT_S = 10.0
# The nanopyx modules the artifact metrics use (saft_core.metrics). Edge maps need none: they
# are computed in numpy (saft_core.edges, NanoJ-SRRF's radiality).
METRIC_MODULES = ("nanopyx.core.analysis.decorr", "nanopyx.core.transform._interpolation")
# Packages whose versions `saft doctor` and GET /v1/info report.
PACKAGES = (
    "saft-service",
    "torch",
    "numpy",
    "tifffile",
    "fastapi",
    "celery",
    "sqlalchemy",
    "nanopyx",
    "imageio-ffmpeg",
)
NANOPYX_HINT = "install nanopyx (pip install nanopyx)"


@dataclass(frozen=True)
class Capability:
    """One part: available or not, why not, and what was found (e.g. the ffmpeg binary)."""

    available: bool
    reason: str | None = None  # set when unavailable, fit to show to users
    detail: str | None = None


@dataclass(frozen=True)
class Capabilities:
    """``edges``: SRRF edge maps (numpy; always there); ``metrics``: RSE/RSP/decorrelation
    (nanopyx);
    ``video``: MP4 output (imageio-ffmpeg's binary); ``device``: the torch device runs use."""

    edges: Capability
    metrics: Capability
    video: Capability
    device: Capability

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: asdict(getattr(self, name)) for name in NAMES}


NAMES = ("edges", "metrics", "video", "device")


def probe(device: str | None = None) -> Capabilities:
    """Probe every part now; ``device`` is the preference given to ``select_device``."""
    return Capabilities(
        edges=Capability(True, detail="numpy NanoJ-SRRF radiality (saft_core.edges)"),
        metrics=nanopyx_capability(METRIC_MODULES),
        video=video_capability(),
        device=device_capability(device),
    )


@functools.lru_cache(maxsize=4)
def cached(device: str | None = None) -> Capabilities:
    """``probe`` once per process (a worker's parts do not change while it runs)."""
    return probe(device)


def nanopyx_capability(modules: tuple[str, ...]) -> Capability:
    """Available if every nanopyx module imports (quietly, as saft_core uses them)."""
    from saft_core.edges import import_nanopyx

    try:
        for module in modules:
            import_nanopyx(module)
    except Exception as exc:  # ImportError, or a broken build raising anything on import
        return Capability(False, f"nanopyx cannot be imported ({_short(exc)}); {NANOPYX_HINT}")
    return Capability(True, detail=f"nanopyx {package_version('nanopyx') or '(version unknown)'}")


def video_capability() -> Capability:
    """Available if imageio-ffmpeg finds an ffmpeg binary (or ``IMAGEIO_FFMPEG_EXE``) that runs."""
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as exc:
        return Capability(False, f"no ffmpeg for MP4 output ({_short(exc)})")
    try:
        done = subprocess.run(
            [exe, "-hide_banner", "-version"],
            capture_output=True,
            timeout=FFMPEG_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Capability(False, f"ffmpeg {exe} does not run ({_short(exc)})")
    if done.returncode != 0:
        return Capability(False, f"ffmpeg {exe} exited with {done.returncode}")
    first = done.stdout.decode(errors="replace").split(" Copyright")[0].strip()
    return Capability(True, detail=f"{first or 'ffmpeg'} ({exe})")


def device_capability(device: str | None = None) -> Capability:
    """The device ``select_device(device)`` picks, described; imports torch (lazily)."""
    try:
        from saft_core.device import describe_device, select_device

        return Capability(True, detail=describe_device(select_device(device)))
    except Exception as exc:  # no torch, or a device that does not exist here
        return Capability(False, _short(exc))


def torch_build() -> dict[str, Any]:
    """torch's version, the CUDA/cuDNN it was built with, and each visible GPU (MiB)."""
    try:
        import torch
    except Exception as exc:
        return {"error": f"torch cannot be imported ({_short(exc)})"}
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    gpus = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            gpus.append(
                {
                    "index": index,
                    "name": props.name,
                    "memory_mib": props.total_memory // 2**20,
                    "capability": f"{props.major}.{props.minor}",
                }
            )
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,  # None for a CPU-only build
        "cudnn": cudnn,
        "gpus": gpus,
    }


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def package_versions() -> dict[str, str | None]:
    """Installed versions of ``PACKAGES`` (None: not installed), read without importing."""
    return {name: package_version(name) for name in PACKAGES}


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
