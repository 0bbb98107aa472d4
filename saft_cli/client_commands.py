"""Client commands of ``saft``: use a running SAFT service from a workstation.

``submit``, ``jobs``, ``show``, ``cancel``, ``reconstruct-job``, ``download`` and ``watch``
talk to the service through ``saft_client`` (httpx only: no torch import, quick to start).
The service is ``--url`` / ``$SAFT_URL`` (default http://127.0.0.1:8000, where ``saft serve``
listens) with the key ``--api-key`` / ``$SAFT_API_KEY``.

Exit codes: 0 success; 1 the job or reconstruction waited for failed or was cancelled
(or ``watch --once`` left failed files); 2 the request was refused (the one-line problem
detail and field are printed), the service is unreachable, or bad usage; 130 interrupted.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from saft_cli.param_options import SaftOptions, saft_param_options
from saft_client import Job, JobEvent, Reconstruction, SaftClient, SaftClientError
from saft_client._core import DEFAULT_URL, model_ref
from saft_core.states import JOB_STATES


def register(cli: click.Group) -> None:
    """Attach the client commands to the ``saft`` group."""
    for command in (submit, jobs, show, cancel, reconstruct_job, download, watch):
        cli.add_command(command)


class ServiceError(click.ClickException):
    """A refused request or an unreachable service: one line on stderr and exit code 2,
    the same as a local ``SaftError``."""

    exit_code = 2

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(" ".join(str(message).split()))
        self.field = field

    def format_message(self) -> str:
        where = f" ({self.field})" if self.field else ""
        return f"error{where}: {self.message}"

    def show(self, file: Any = None) -> None:
        click.echo(f"saft: {self.format_message()}", err=True)


class _Outcome(click.ClickException):
    """The job (or reconstruction) ended badly: say so on one line, exit code 1."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(f"saft: {self.message}", err=True)


def _interrupted(what: str) -> click.exceptions.Exit:
    click.echo(f"\nsaft: interrupted; {what}", err=True)
    return click.exceptions.Exit(130)


# ---- shared options -----------------------------------------------------------------------


def _service_command(f: Callable[..., Any]) -> Callable[..., Any]:
    """Adds --url/--api-key, hands the command a client, and turns client errors into
    ``ServiceError``."""

    @click.option(
        "--api-key",
        envvar="SAFT_API_KEY",
        show_envvar=True,
        metavar="KEY",
        help="API key (from `saft users add NAME`).",
    )
    @click.option(
        "--url",
        envvar="SAFT_URL",
        show_envvar=True,
        metavar="URL",
        help=f"Service URL [default: {DEFAULT_URL}].",
    )
    @functools.wraps(f)
    def wrapper(url: str | None, api_key: str | None, **kwargs: Any) -> Any:
        try:
            client = SaftClient(url, api_key)
            if not client.api_key:
                raise SaftClientError("no API key: pass --api-key or set SAFT_API_KEY")
            with client:
                return f(client, **kwargs)
        except SaftClientError as exc:
            field, message = exc.summary()
            raise ServiceError(message, field) from None

    return wrapper


def _model_option(name: str, dest: str, kind: str) -> Callable[..., Any]:
    return click.option(
        name,
        dest,
        default="default",
        show_default=True,
        metavar="ID|default|PATH",
        help=f"{kind} network: 'default', an uploaded model id, or a .pth file to upload.",
    )


# ---- output helpers ---------------------------------------------------------------------


def _when(dt: datetime | None) -> str:
    return dt.astimezone().strftime("%Y-%m-%d %H:%M:%S") if dt else "-"


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    lines = [header, *rows]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _duration(job: Job) -> str:
    if job.started_at and job.finished_at:
        return f" in {(job.finished_at - job.started_at).total_seconds():.1f} s"
    return ""


def _iteration_table(client: SaftClient, job: Job) -> str:
    its = client.iterations(job.id)
    if not its:
        return "no finished iterations"
    rows = [
        [
            ("* " if it.recommended else "  ") + str(it.iteration),
            _num(it.losses.get("fidelity")),
            _num(it.frc_resolution, 3),
            _num(it.haze_ratio, 3),
            _num(it.total_loss),
            _num(it.rse),
            _num(it.rsp),
            _num(it.resolution, 3),
            f"{it.seconds:.1f}",
        ]
        for it in its
    ]
    header = ["  it", "fidelity", "FRC res.", "haze", "total loss", "RSE", "RSP", "decorr.", "s"]
    return _table(header, rows) + (
        "\n(* recommended: the stop rule judges the fidelity (lower is better) and guards FRC "
        "resolution, haze (SR where the pretrained output is empty / on structure) and RSE; "
        "RSE/RSP vs the LR frame; resolutions in SR px)"
    )


def _dump(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


# ---- progress bars ----------------------------------------------------------------------


class JobProgress:
    """A tqdm bar fed by job events: overall progress, current iteration, loss and ETA."""

    def __init__(self, job: Job) -> None:
        from tqdm import tqdm

        self.job = job
        self.total = max(job.iterations_total, 1)
        self.bar = tqdm(
            total=self.total,
            desc=f"job {job.id[:8]} {job.state}",
            file=sys.stderr,
            dynamic_ncols=True,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}",
        )

    def __call__(self, ev: JobEvent) -> None:
        if ev.kind == "progress" and ev.progress is not None:
            self.bar.n = min(ev.progress * self.total, self.total)
            self._postfix(ev.iteration, ev.data.get("loss"))
        elif ev.kind == "iteration" and ev.iteration is not None:
            k = ev.iteration
            loss = (ev.data.get("losses") or {}).get("total")
            if k > 0:
                self.bar.n = max(self.bar.n, min(k, self.total))
                self._postfix(min(k + 1, self.total), loss)
            what = "pretrained" if k == 0 else f"loss {_num(loss)}"
            self.bar.write(
                f"iteration {k}: {what}, RSE {_num(ev.data.get('rse'))}, "
                f"RSP {_num(ev.data.get('rsp'))}",
                file=sys.stderr,
            )
        elif ev.kind == "state" and ev.state:
            self.bar.set_description_str(f"job {self.job.id[:8]} {ev.state}", refresh=False)
            if ev.state == "succeeded":
                self.bar.n = self.total
        elif ev.kind == "log" and ev.data.get("message"):
            self.bar.write(str(ev.data["message"]), file=sys.stderr)
        self.bar.refresh()

    def _postfix(self, iteration: int | None, loss: Any) -> None:
        postfix = {"iteration": f"{iteration or '?'}/{self.total}"}
        if loss is not None:
            postfix["loss"] = _num(float(loss))
        self.bar.set_postfix(postfix, refresh=False)

    def close(self) -> None:
        self.bar.close()


def _follow_job(client: SaftClient, job: Job, timeout: float | None) -> Job:
    bar = JobProgress(job)
    try:
        return client.wait(job.id, on_event=bar, timeout=timeout)
    except KeyboardInterrupt:
        bar.close()
        raise _interrupted(f"job {job.id} goes on (saft show / saft cancel {job.id})") from None
    finally:
        bar.close()


def _follow_reconstruction(
    client: SaftClient, rec: Reconstruction, timeout: float | None
) -> Reconstruction:
    from tqdm import tqdm

    bar = tqdm(
        total=100,
        desc=f"reconstruction {rec.id[:8]} {rec.state}",
        file=sys.stderr,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}",
    )

    def update(r: Reconstruction) -> None:
        bar.n = round(r.progress * 100, 1)
        bar.set_description_str(f"reconstruction {r.id[:8]} {r.state}", refresh=False)
        bar.refresh()

    try:
        return client.wait_reconstruction(rec.id, timeout, on_progress=update)
    except KeyboardInterrupt:
        raise _interrupted(f"reconstruction {rec.id} goes on") from None
    finally:
        bar.close()


def _download(client: SaftClient, url: str, dest: Path) -> Path:
    from tqdm import tqdm

    bar = tqdm(unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr, leave=False)

    def progress(done: int, total: int | None) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        return client.download(url, dest, on_progress=progress)
    except KeyboardInterrupt:
        raise _interrupted("run the same download again to resume it") from None
    finally:
        bar.close()


# ---- commands ---------------------------------------------------------------------------


@click.command()
@click.argument("lr", metavar="LR.tif")
@click.option("--edge", metavar="EDGE.tif", help="Edge map (file or dataset id) [default: SRRF].")
@click.option("--smlm", metavar="SMLM.tif", help="SMLM image on the SR grid (--mode wsf).")
@click.option("--mode", type=click.Choice(["saft", "wsf"]), default="saft", show_default=True)
@_model_option("--model", "sr_model", "SR")
@_model_option("--den", "den_model", "DEN")
@click.option("--wait", is_flag=True, help="Follow the job with a progress bar until it ends.")
@click.option(
    "--timeout", type=float, default=None, help="With --wait: stop waiting after SECONDS."
)
@click.option(
    "--idempotency-key", default=None, help="Resubmitting with the same key returns the same job."
)
@click.option("--json", "as_json", is_flag=True, help="Print the job (and iterations) as JSON.")
@saft_param_options(local=False)
@_service_command
def submit(
    client: SaftClient,
    lr: str,
    edge: str | None,
    smlm: str | None,
    mode: str,
    sr_model: str,
    den_model: str,
    wait: bool,
    timeout: float | None,
    idempotency_key: str | None,
    as_json: bool,
    saft_options: SaftOptions,
) -> None:
    """Fine-tune on LR.tif (uploaded; or a dataset id) in the service; prints the job id."""
    job = client.submit_job(
        lr,
        edge=edge,
        smlm=smlm,
        mode=mode,
        sr_model=sr_model,
        den_model=den_model,
        idempotency_key=idempotency_key,
        params=saft_options.wire(),
    )
    if not wait:
        if as_json:
            _dump(dict(job.raw))
        else:
            click.echo(job.id)
            click.echo(f"saft: job {job.id} {job.state}; see it with: saft show ID", err=True)
        return
    click.echo(f"saft: submitted job {job.id}", err=True)
    job = _follow_job(client, job, timeout)
    _report(client, job, as_json)


def _report(client: SaftClient, job: Job, as_json: bool) -> None:
    """The final job, its iterations and the recommendation; exit 1 if it did not succeed."""
    if as_json:
        its = [dict(it.raw) for it in client.iterations(job.id)]
        _dump({"job": dict(job.raw), "iterations": its})
    else:
        click.echo(f"job {job.id} {job.state}{_duration(job)}")
        if job.succeeded:
            click.echo(f"recommended iteration: {_num(job.recommended_iteration)}")
        click.echo(_iteration_table(client, job))
    if not job.succeeded:
        raise _Outcome(f"job {job.id} {job.state}" + (f": {job.error}" if job.error else ""))


@click.command()
@click.option(
    "--state",
    type=click.Choice(JOB_STATES),
    help="Only jobs in this state.",
)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@_service_command
def jobs(client: SaftClient, state: str | None, limit: int, as_json: bool) -> None:
    """List your jobs, newest first."""
    found = client.list_jobs(state=state, limit=limit)
    if as_json:
        _dump([dict(j.raw) for j in found])
        return
    if not found:
        click.echo("no jobs", err=True)
        return
    rows = [
        [
            j.id,
            j.state,
            f"{j.progress * 100:.0f}%",
            f"{j.iterations_done}/{j.iterations_total}",
            _num(j.recommended_iteration),
            _when(j.created_at),
        ]
        for j in found
    ]
    click.echo(_table(["JOB", "STATE", "PROGRESS", "ITER", "REC", "CREATED"], rows))


@click.command()
@click.argument("job_id", metavar="JOB")
@click.option("--json", "as_json", is_flag=True)
@_service_command
def show(client: SaftClient, job_id: str, as_json: bool) -> None:
    """Show a job and its iterations (losses, quality metrics, recommendation)."""
    job = client.get_job(job_id)
    if as_json:
        its = [dict(it.raw) for it in client.iterations(job.id)]
        _dump({"job": dict(job.raw), "iterations": its})
        return
    params = " ".join(f"{k}={v}" for k, v in job.params.items() if k != "mode")
    inputs = f"lr {job.lr_dataset}" + (f", edge {job.edge_dataset}" if job.edge_dataset else "")
    inputs += f", smlm {job.smlm_dataset}" if job.smlm_dataset else ""
    lines = [
        f"job        {job.id}",
        f"state      {job.state} ({job.progress * 100:.0f}%, "
        f"{job.iterations_done}/{job.iterations_total} iterations)"
        + (", cancel requested" if job.cancel_requested and not job.finished else ""),
        f"recommend  iteration {_num(job.recommended_iteration)}",
        f"mode       {job.mode}; SR model {job.sr_model}; DEN model {job.den_model}",
        f"inputs     {inputs}",
        f"params     {params}" + (f" (sigma used {job.sigma_used:.3g})" if job.sigma_used else ""),
        f"times      created {_when(job.created_at)}, started {_when(job.started_at)}, "
        f"finished {_when(job.finished_at)}",
    ]
    if job.device:
        lines.append(f"device     {job.device}")
    if job.error:
        lines.append(f"error      {job.error}")
    click.echo("\n".join(lines))
    click.echo(_iteration_table(client, job))


@click.command()
@click.argument("job_id", metavar="JOB")
@_service_command
def cancel(client: SaftClient, job_id: str) -> None:
    """Cancel a job: a queued one at once, a running one at its next step."""
    job = client.cancel(job_id)
    if job.state == "cancelled":
        click.echo(f"job {job.id} cancelled")
    else:
        click.echo(f"job {job.id} {job.state}: cancel requested; it stops at its next step")


def _iteration_arg(client: SaftClient, job_id: str, text: str) -> int:
    if text.strip().lower() in ("recommended", "best"):
        k = client.get_job(job_id).recommended_iteration
        if k is None:
            raise SaftClientError(f"job {job_id} has no recommended iteration", field="iteration")
        return k
    try:
        return int(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is neither an iteration number nor 'recommended'", param_hint="ITERATION"
        ) from None


@click.command("reconstruct-job")
@click.argument("job_id", metavar="JOB")
@click.argument("iteration", metavar="ITERATION")
@click.option("--no-video", is_flag=True, help="Skip the MP4 preview.")
@click.option("--wait", is_flag=True, help="Wait until the reconstruction ends.")
@click.option(
    "--download",
    "download_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Wait, then save the TIFF (and MP4) into DIR.",
)
@click.option("--timeout", type=float, default=None, help="Stop waiting after SECONDS.")
@_service_command
def reconstruct_job(
    client: SaftClient,
    job_id: str,
    iteration: str,
    no_video: bool,
    wait: bool,
    download_dir: Path | None,
    timeout: float | None,
) -> None:
    """Reconstruct the whole stack of JOB with ITERATION's checkpoint (a number or
    'recommended'); prints the reconstruction id."""
    k = _iteration_arg(client, job_id, iteration)
    rec = client.reconstruct(job_id, k, video=not no_video)
    if not (wait or download_dir):
        click.echo(rec.id)
        return
    click.echo(f"saft: reconstruction {rec.id} of job {job_id} iteration {k}", err=True)
    rec = _follow_reconstruction(client, rec, timeout)
    if not rec.succeeded:
        error = f": {rec.error}" if rec.error else ""
        raise _Outcome(f"reconstruction {rec.id} {rec.state}{error}")
    if download_dir is None:
        click.echo(rec.id)
        for url in (rec.tiff_url, rec.mp4_url):
            if url:
                click.echo(client.urls.resolve(url))
        return
    download_dir.mkdir(parents=True, exist_ok=True)
    for url in (rec.tiff_url, rec.mp4_url):
        if url:
            click.echo(str(_download(client, url, download_dir)))


@click.command()
@click.argument("target", metavar="URL_OR_RECON_ID")
@click.option(
    "-o",
    "--output",
    "out",
    type=click.Path(path_type=Path),
    default=Path("."),
    show_default=True,
    help="File to write, or a directory (the server's file name).",
)
@click.option("--mp4", is_flag=True, help="For a reconstruction id: the MP4 instead of the TIFF.")
@_service_command
def download(client: SaftClient, target: str, out: Path, mp4: bool) -> None:
    """Download an artifact URL (or a reconstruction's TIFF); resumes a partial download."""
    url = target
    if "/" not in target:
        rec = client.get_reconstruction(target)
        if not rec.succeeded:
            raise SaftClientError(
                f"reconstruction {rec.id} is {rec.state}; its files exist once it has succeeded"
            )
        url = (rec.mp4_url if mp4 else rec.tiff_url) or ""
        if not url:
            raise SaftClientError(f"reconstruction {rec.id} has no MP4 (made without video)")
    click.echo(str(_download(client, url, out)))


@click.command()
@click.argument(
    "folder", metavar="DIR", type=click.Path(exists=True, file_okay=False, path_type=Path)
)
@click.option(
    "--results",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write NAME_saft.tif/.mp4 here instead of beside the input.",
)
@click.option("--pattern", default="*.tif", show_default=True, help="Stacks to pick up.")
@click.option(
    "--interval", type=click.FloatRange(min=0.05), default=2.0, show_default=True, help="Seconds."
)
@click.option("--once", is_flag=True, help="Process what is in DIR now, then exit.")
@click.option("--mode", type=click.Choice(["saft", "wsf"]), default="saft", show_default=True)
@_model_option("--model", "sr_model", "SR")
@_model_option("--den", "den_model", "DEN")
@click.option("--no-video", is_flag=True, help="Skip the MP4 previews.")
@click.option("--retry-failed", is_flag=True, help="Submit files that failed before again.")
@saft_param_options(local=False)
@_service_command
def watch(
    client: SaftClient,
    folder: Path,
    results: Path | None,
    pattern: str,
    interval: float,
    once: bool,
    mode: str,
    sr_model: str,
    den_model: str,
    no_video: bool,
    retry_failed: bool,
    saft_options: SaftOptions,
) -> None:
    """Fine-tune every new stack in DIR once it is completely written; reconstruct the
    recommended iteration into NAME_saft.tif and NAME_saft.mp4 (NAME_edge.tif is used as
    the edge map of NAME.tif). Progress is kept in DIR/.saft-watch.json."""
    from saft_client.watch import Watcher, WatchOptions

    client.list_jobs(limit=1)  # a wrong URL or key fails now, not at the first stack
    options = WatchOptions(
        pattern=pattern,
        results=results.resolve() if results else None,
        mode=mode,
        sr_model=_upload_if_file(client, sr_model, "sr"),
        den_model=_upload_if_file(client, den_model, "den"),
        params=saft_options.wire(),
        video=not no_video,
        retry_failed=retry_failed,
    )
    watcher = Watcher(
        client, folder, options, echo=lambda m: click.echo(f"{time.strftime('%H:%M:%S')} {m}")
    )
    click.echo(f"saft: watching {watcher.folder} for {pattern} (Ctrl-C stops)", err=True)
    try:
        watcher.run(interval, once=once)
    except KeyboardInterrupt:
        raise _interrupted(f"progress is kept in {watcher.state.path}") from None
    if once:
        failed = sorted(n for n, e in watcher.entries.items() if e.get("status") != "done")
        done = len(watcher.entries) - len(failed)
        click.echo(f"saft: {done} done, {len(failed)} not: {', '.join(failed) or '-'}", err=True)
        if failed:
            raise _Outcome(f"{len(failed)} file(s) failed; see {watcher.state.path}")


def _upload_if_file(client: SaftClient, spec: str, kind: str) -> str:
    """The watcher submits by id: upload a checkpoint file once, up front."""
    ref = model_ref(spec, f"{kind}_model")
    if ref is not None and ref.path is not None:
        model = client.upload_model(ref.path, kind)
        click.echo(f"saft: uploaded {ref.path} as {kind} model {model.id}", err=True)
        return model.id
    return spec
