"""``saft doctor``: what a facility admin runs first on a new machine.

Prints versions (Python, torch with its CUDA/cuDNN build, the service's packages), this
machine's GPUs, the device a worker here would use, the optional parts (nanopyx edge maps
and metrics, ffmpeg video), the data dir, database and broker reachability, and the workers
seen with their devices. Exits 1 with one line per problem (unreachable database or broker,
no writable data dir, a required package or device missing); missing optional parts are
warnings and do not change the exit status.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

PART_LABELS = {
    "edges": "edge maps",
    "metrics": "metrics",
    "video": "MP4 video",
    "device": "device",
}


@dataclass
class Diagnosis:
    """The full report, and what in it is wrong (problems) or degraded (warnings)."""

    report: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def diagnose(settings: Any) -> Diagnosis:
    """Collect the report of this machine and the service it is configured for."""
    from persistence.diagnostics import REQUIRED_PACKAGES, service_report
    from saft_core import capabilities

    report = service_report(settings)
    report["build"] = capabilities.torch_build()
    report["device_setting"] = settings.device or "auto"
    report["capabilities"] = capabilities.probe(settings.device).to_dict()
    diag = Diagnosis(report)

    for name in REQUIRED_PACKAGES:
        if report["packages"].get(name) is None:
            diag.problems.append(f"required package {name} is not installed")
    if "error" in report["build"]:
        diag.problems.append(report["build"]["error"])
    for name, cap in report["capabilities"].items():
        if cap["available"]:
            continue
        line = f"{PART_LABELS[name]} unavailable: {cap['reason']}"
        # A worker here could not run anything without its device; the rest degrades.
        (diag.problems if name == "device" else diag.warnings).append(line)
    if report["data_dir"]["error"]:
        diag.problems.append(f"data dir: {report['data_dir']['error']}")
    if report["database"]["error"]:
        diag.problems.append(
            f"database {report['database']['url']} unreachable: {report['database']['error']}"
        )
    broker = report["broker"]
    if broker["error"]:
        line = f"broker {broker['url']} unreachable: {broker['error']}"
        # The embedded broker only runs while `saft serve` does: not a fault of the set-up.
        (diag.warnings if settings.embedded_broker else diag.problems).append(line)
    report["user"] = {"uid": os.geteuid(), "root": os.geteuid() == 0}
    if report["user"]["root"]:
        diag.warnings.append(
            "running as root: run the service and its workers as an unprivileged user "
            "(the Docker images use uid 10001) that owns the data dir"
        )
    if report["workers_error"]:
        diag.warnings.append(f"workers: {report['workers_error']}")
    elif not any(w["alive"] for w in report["workers"]):
        diag.warnings.append(
            f"no worker has reported in the last {settings.stale_after_s:g} s "
            "(start `saft worker` or `saft serve`; jobs wait in the queue until then)"
        )
    for w in report["workers"]:
        if w["alive"]:
            for name, reason in w["unavailable"].items():
                diag.warnings.append(f"worker {w['id']}: {PART_LABELS[name]} unavailable: {reason}")
    return diag


def render(diag: Diagnosis) -> str:
    """The report as aligned text lines."""
    r = diag.report
    build = r["build"]
    rows: list[tuple[str, str]] = [
        ("python", f"{r['python']['version']} ({r['python']['executable']})"),
        ("packages", ", ".join(f"{k} {v or '-'}" for k, v in r["packages"].items())),
    ]
    if "error" in build:
        rows.append(("torch", build["error"]))
    else:
        rows.append(
            (
                "torch build",
                f"torch {build['torch']}, CUDA {build['cuda'] or 'none (CPU-only build)'}, "
                f"cuDNN {build['cudnn'] or 'none'}",
            )
        )
        gpus = [
            f"cuda:{g['index']} {g['name']} ({g['memory_mib'] / 1024:.0f} GiB)"
            for g in build["gpus"]
        ]
        rows.append(("GPUs", "; ".join(gpus) or "none visible"))
    for name, cap in r["capabilities"].items():
        shown = (cap["detail"] or "yes") if cap["available"] else f"NO: {cap['reason']}"
        label = PART_LABELS[name]
        if name == "device":
            label = f"device ({r['device_setting']})"
        rows.append((label, shown))
    for key in ("data_dir", "database", "broker"):
        item = r[key]
        where = item.get("path") or item.get("url")
        rows.append((key.replace("_", " "), f"{where}: {item['error'] or 'ok'}"))
    rows.append(("queue", r["queue"]))
    if not r["workers"]:
        rows.append(("workers", r["workers_error"] or "none seen"))
    for i, w in enumerate(r["workers"]):
        state = "alive" if w["alive"] else "gone"
        missing = ", ".join(PART_LABELS[n] for n in w["unavailable"]) or "none"
        rows.append(
            (
                "workers" if i == 0 else "",
                f"{w['id']} queue {w['queue']}: {w['device'] or '?'}; {state}, seen "
                f"{w['seen_seconds_ago']:g} s ago; unavailable: {missing}",
            )
        )
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    if diag.warnings:
        lines += ["", "warnings:", *(f"  - {w}" for w in diag.warnings)]
    if diag.problems:
        lines += ["", "problems:", *(f"  - {p}" for p in diag.problems)]
    else:
        lines += ["", "no problems found"]
    return "\n".join(lines)


@click.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Data directory (default: $SAFT_DATA_DIR or ./saft-data).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def doctor(data_dir: Path | None, as_json: bool) -> None:
    """Check this machine and the configured service; exit 1 listing each problem."""
    from persistence.settings import get_settings

    if data_dir is not None:  # checked, never created: doctor changes nothing
        os.environ["SAFT_DATA_DIR"] = str(data_dir)
        get_settings.cache_clear()
    diag = diagnose(get_settings())
    if as_json:
        click.echo(
            json.dumps(
                {**diag.report, "problems": diag.problems, "warnings": diag.warnings}, indent=2
            )
        )
    else:
        click.echo(render(diag))
    if diag.problems:
        for line in diag.problems:
            click.echo(f"saft doctor: {line}", err=True)
        raise SystemExit(1)
