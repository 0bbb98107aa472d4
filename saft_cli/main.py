"""The ``saft`` command: local science commands plus the service's commands.

User errors (``SaftError``) end with exit code 2 and one line on stderr; heavy imports
(torch, nanopyx) happen inside the commands so ``saft --help`` stays fast.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from saft_cli.param_options import SaftOptions, saft_param_options
from saft_core.errors import SaftError


class _SaftGroup(click.Group):
    """Maps engine errors to exit code 2 with a one-line message, Ctrl-C to 130."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SaftError as exc:
            where = f" ({exc.field})" if exc.field else ""
            click.echo(f"saft: error{where}: {exc.message}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo("\nsaft: interrupted", err=True)
            ctx.exit(130)


@click.group(cls=_SaftGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log progress details to stderr.")
def cli(verbose: bool) -> None:
    """Self-adaptive fine-tuning (SAFT) of SFSRM super-resolution microscopy networks."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _path_in(**kw: Any) -> click.Path:
    return click.Path(exists=True, dir_okay=False, path_type=Path, **kw)


@cli.command()
@click.argument("lr_tif", type=_path_in())
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path))
def edges(lr_tif: Path, out: Path) -> None:
    """Compute the SRRF edge map of LR_TIF (8-bit range, same size) into OUTPUT."""
    from saft_core.edges import compute_edges
    from saft_core.io import read_stack, write_stack

    stack = read_stack(lr_tif, field="lr")
    with _bar(stack.data.shape[0], "edges", "frame") as bar:
        result = compute_edges(stack.data, progress=_bar_progress(bar))
    write_stack(out, result, stack.pixel_size)
    click.echo(f"wrote {out} {tuple(result.shape)}")


@cli.command()
@click.argument("lr_tif", type=_path_in())
@click.option("--edge", "edge_tif", type=_path_in(), help="Edge map (default: computed by SRRF).")
@click.option("--smlm", "smlm_tif", type=_path_in(), help="SMLM image on the SR grid (wsf mode).")
@click.option("--mode", type=click.Choice(["saft", "wsf"]), default="saft", show_default=True)
@click.option(
    "--model",
    "model_spec",
    default="default",
    show_default=True,
    help="SR checkpoint (.pth) or 'default'.",
)
@click.option(
    "--den",
    "den_spec",
    default="default",
    show_default=True,
    help="DEN checkpoint (.pth) or 'default'.",
)
@click.option(
    "-o",
    "--output",
    "run_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Run directory to create.",
)
@saft_param_options(local=True)
@click.option("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when present).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in RUN_DIR.")
def finetune(
    lr_tif: Path,
    edge_tif: Path | None,
    smlm_tif: Path | None,
    mode: str,
    model_spec: str,
    den_spec: str,
    run_dir: Path,
    saft_options: SaftOptions,
    device: str | None,
    resume: bool,
) -> None:
    """Fine-tune the SR network on LR_TIF; writes checkpoints, previews and the loss record."""
    from saft_core.errors import InvalidParameterError

    params = saft_options.resolve(mode)  # the preset's values, the given options over them
    if mode == "wsf" and smlm_tif is None:
        raise InvalidParameterError("--mode wsf needs --smlm SMLM.tif", field="smlm")

    from saft_core.io import read_stack
    from saft_core.rundir import resume_after, run_into

    stack = read_stack(lr_tif, field="lr")
    edge = read_stack(edge_tif, field="edge").data if edge_tif else None
    smlm = read_stack(smlm_tif, field="smlm").data if smlm_tif else None
    if resume:
        resume_after(run_dir, True)  # fail before the slow edge map when there is nothing
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise InvalidParameterError(
            f"run directory {run_dir} is not empty (use --resume or another -o)", field="output"
        )
    if edge is None:
        click.echo("computing SRRF edge map ...", err=True)
        edge = _edges_with_bar(stack.data)

    bar = _bar(None, "fine-tuning", "step")
    with bar:

        def progress(done: int, total: int, info: dict[str, Any]) -> None:
            bar.total = total
            bar.n = done
            bar.set_postfix(iteration=info.get("iteration"), loss=f"{info.get('loss', 0):.4g}")
            bar.refresh()

        summary = run_into(
            run_dir,
            stack.data,
            edge,
            params,
            sr_model=model_spec,
            den_model=den_spec,
            smlm=smlm,
            device=device,
            resume=resume,
            on_progress=progress,
            pixel_size=stack.pixel_size,
            run_info={
                "inputs": {
                    "lr": str(lr_tif),
                    "edge": str(edge_tif) if edge_tif else None,
                    "smlm": str(smlm_tif) if smlm_tif else None,
                    "model": model_spec,
                    "den": den_spec,
                    "pixel_size": stack.pixel_size,
                }
            },
        )
    for rec in summary.records:
        click.echo(json.dumps(rec))
    click.echo(
        f"recommended iteration: {summary.recommended_iteration} "
        f"(sigma {summary.sigma}); run directory: {run_dir}"
    )


@cli.command()
@click.argument("lr_tif", type=_path_in())
@click.option("--edge", "edge_tif", type=_path_in(), help="Edge map (default: computed by SRRF).")
@click.option(
    "--checkpoint", required=True, help="iteration_NN.pth of a run, any SR .pth, or 'default'."
)
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path))
@click.option("--video", type=click.Path(path_type=Path), default=None, help="Also write an MP4.")
@click.option("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when present).")
def reconstruct(
    lr_tif: Path,
    edge_tif: Path | None,
    checkpoint: str,
    out: Path,
    video: Path | None,
    device: str | None,
) -> None:
    """Super-resolve the whole of LR_TIF with a chosen checkpoint (TIFF, optional MP4)."""
    from saft_core.io import read_stack
    from saft_core.networks import load_model
    from saft_core.reconstruct import reconstruct as run_reconstruct

    if checkpoint != "default" and not Path(checkpoint).is_file():
        from saft_core.errors import CheckpointError

        raise CheckpointError(f"checkpoint {checkpoint} does not exist", field="checkpoint")
    lr = read_stack(lr_tif, field="lr")
    edge = read_stack(edge_tif, field="edge").data if edge_tif else None
    model = load_model(checkpoint, "sr")
    with _bar(lr.data.shape[0], "reconstructing", "frame") as bar:
        summary = run_reconstruct(
            lr.data,
            edge,
            model,
            out,
            video=video,
            pixel_size=lr.pixel_size,
            device=device,
            on_progress=_bar_progress(bar),
        )
    click.echo(f"wrote {summary.tiff} {summary.shape}" + (f" and {video}" if video else ""))


@cli.command("train-base")
@click.option(
    "-o",
    "--output",
    "out",
    type=click.Path(path_type=Path),
    required=True,
    help="Directory for the trained default_sr.pth, default_den.pth and model card.",
)
@click.option(
    "--steps", type=int, default=None, help="Training steps (default: the shipped run's)."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=None, help="torch threads (default: all cores).")
def train_base(out: Path, steps: int, seed: int, threads: int | None) -> None:
    """Train the small default SR and DEN models over the simulator's broad conditions."""
    from saft_core.pretraining import train_base as run_train

    with _bar(None, "training", "step") as bar:
        card = run_train(out, steps=steps, seed=seed, threads=threads, progress=_bar_progress(bar))
    click.echo(json.dumps(card, indent=2, default=str))


def _bar(total: int | None, desc: str, unit: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)


def _bar_progress(bar: Any):
    def update(done: int, total: int, *_: Any) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return update


def _edges_with_bar(data: Any) -> Any:
    from saft_core.edges import compute_edges

    with _bar(data.shape[0], "edges", "frame") as bar:
        return compute_edges(data, progress=_bar_progress(bar))


@functools.cache
def _register_service_commands() -> None:
    """Attach serve/worker/users/db commands when the service packages are installed."""
    from saft_cli.client_commands import register as register_client

    register_client(cli)
    try:
        from saft_cli.service_commands import register
    except ImportError as exc:  # a science-only install still has the local commands
        logging.getLogger(__name__).debug("service commands unavailable: %s", exc)
        return
    register(cli)


def main() -> None:
    _register_service_commands()
    cli(prog_name="saft")


if __name__ == "__main__":
    main()
