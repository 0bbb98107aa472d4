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
from typing import Any, get_args

import click

from saft_cli.param_help import default_help
from saft_core.errors import SaftError
from saft_core.params import PRESETS, Background, SaftParams


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
@click.option(
    "--preset",
    type=click.Choice(list(PRESETS)),
    default=None,
    help="Named parameter set: 'reference' (the authors' schedule, the default) or 'adaptive' "
    "(this project's, measured in docs/science.md). Options given explicitly win over it.",
)
@click.option("--iterations", type=int, default=None, help="Default 5 (saft) or 3 (wsf).")
@click.option("--lr", "learning_rate", type=float, default=None, help=default_help("lr"))
@click.option(
    "--sigma", default=None, help="RSF sigma in LR pixels or 'auto'. " + default_help("sigma")
)
@click.option("--ksize", type=int, default=None, help=default_help("ksize"))
@click.option("--continuity-level", type=float, default=None, help=default_help("continuity_level"))
@click.option("--sparse-level", type=float, default=None, help=default_help("sparse_level"))
@click.option(
    "--consistency-level", type=float, default=None, help=default_help("consistency_level")
)
@click.option("--seed", type=int, default=None, help=default_help("seed"))
@click.option("--early-stop", is_flag=True, help="Stop at the recommended iteration.")
@click.option(
    "--background",
    type=click.Choice(get_args(Background)),
    default=None,
    help="Match the degraded SR to the LR by gain and offset ('fit'), the reference's mean "
    "matching ('mean') or gain over an estimated background map ('map'). "
    + default_help("background"),
)
@click.option(
    "--ema",
    type=float,
    default=None,
    help="Decay of the moving average of the SR weights, [0, 1); 0 = off. " + default_help("ema"),
)
@click.option(
    "--warmup",
    type=int,
    default=None,
    help="Optimiser steps of linear learning-rate warm-up, 0..10000. " + default_help("warmup"),
)
@click.option(
    "--haze-level",
    type=float,
    default=None,
    help="Weight of the haze penalty, 0..100; 0 = off. " + default_help("haze_level"),
)
@click.option(
    "--tile",
    type=int,
    default=None,
    help="Training tile side in LR pixels, 16..512. " + default_help("tile"),
)
@click.option(
    "--window",
    type=int,
    default=None,
    help="Odd number of adjacent frames per training window, 3..15. " + default_help("window"),
)
@click.option(
    "--windows-per-tile",
    default=None,
    metavar="N|auto",
    help="Random windows per tile in one iteration, 1..100, or 'auto' (every frame about once). "
    + default_help("windows_per_tile"),
)
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
    preset: str | None,
    iterations: int | None,
    learning_rate: float | None,
    sigma: str | None,
    ksize: int | None,
    continuity_level: float | None,
    sparse_level: float | None,
    consistency_level: float | None,
    seed: int | None,
    early_stop: bool,
    background: str | None,
    ema: float | None,
    warmup: int | None,
    haze_level: float | None,
    tile: int | None,
    window: int | None,
    windows_per_tile: str | None,
    device: str | None,
    resume: bool,
) -> None:
    """Fine-tune the SR network on LR_TIF; writes checkpoints, previews and the loss record."""
    from saft_core.errors import InvalidParameterError

    # Only the options given on the command line override the preset (or the defaults).
    given: dict[str, Any] = {
        "iterations": iterations,
        "lr": learning_rate,
        "sigma": None if sigma is None else _parse_sigma(sigma),
        "ksize": ksize,
        "continuity_level": continuity_level,
        "sparse_level": sparse_level,
        "consistency_level": consistency_level,
        "seed": seed,
        "early_stop": early_stop or None,
        "background": background,
        "ema": ema,
        "warmup": warmup,
        "haze_level": haze_level,
        "tile": tile,
        "window": window,
    }
    overrides = {k: v for k, v in given.items() if v is not None}
    if windows_per_tile is not None:
        overrides["windows_per_tile"] = _parse_windows_per_tile(windows_per_tile)
    params = SaftParams.preset(preset or "reference", **overrides, mode=mode)
    if mode == "wsf" and smlm_tif is None:
        raise InvalidParameterError("--mode wsf needs --smlm SMLM.tif", field="smlm")

    from saft_core.finetune import finetune as run_finetune
    from saft_core.io import read_stack
    from saft_core.rundir import RunDir, summary_json

    lr = read_stack(lr_tif, field="lr")
    edge = read_stack(edge_tif, field="edge").data if edge_tif else None
    smlm = read_stack(smlm_tif, field="smlm").data if smlm_tif else None
    run = RunDir(run_dir, mode)
    resume_from = None
    if resume:
        last = run.last_iteration()
        if last is None:
            raise InvalidParameterError(f"nothing to resume in {run_dir}", field="resume")
        resume_from = run.checkpoint(last)
        run.load_records()
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise InvalidParameterError(
            f"run directory {run_dir} is not empty (use --resume or another -o)", field="output"
        )
    if edge is None:
        click.echo("computing SRRF edge map ...", err=True)
        edge = _edges_with_bar(lr.data)

    bar = _bar(None, "fine-tuning", "step")
    with bar:

        def progress(done: int, total: int, info: dict[str, Any]) -> None:
            bar.total = total
            bar.n = done
            bar.set_postfix(iteration=info.get("iteration"), loss=f"{info.get('loss', 0):.4g}")
            bar.refresh()

        def on_iteration(result: Any) -> None:
            run.write_iteration(result, lr.pixel_size)

        summary = run_finetune(
            lr.data,
            edge,
            params,
            sr_model=model_spec,
            den_model=den_spec,
            smlm=smlm,
            device=device,
            resume=resume_from,
            on_iteration=on_iteration,
            on_progress=progress,
        )
    run.write_run_json(
        summary_json(
            summary,
            inputs={
                "lr": str(lr_tif),
                "edge": str(edge_tif) if edge_tif else None,
                "smlm": str(smlm_tif) if smlm_tif else None,
                "model": model_spec,
                "den": den_spec,
                "pixel_size": lr.pixel_size,
            },
        )
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
    """Train the small default SR and DEN models on the simulator's training condition."""
    from saft_core.training import train_base as run_train

    with _bar(None, "training", "step") as bar:
        card = run_train(out, steps=steps, seed=seed, threads=threads, progress=_bar_progress(bar))
    click.echo(json.dumps(card, indent=2, default=str))


def _parse_windows_per_tile(text: str) -> int | None:
    if text.strip().lower() == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        from saft_core.errors import InvalidParameterError

        raise InvalidParameterError(
            f"windows_per_tile must be an integer from 1 to 100 or 'auto', got {text!r}",
            field="windows_per_tile",
        ) from None


def _parse_sigma(text: str) -> float | str:
    if text == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        from saft_core.errors import InvalidParameterError

        raise InvalidParameterError(
            f"sigma must be a number of LR pixels or 'auto', got {text!r}", field="sigma"
        ) from None


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
