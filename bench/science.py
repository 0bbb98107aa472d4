"""Evidence for the default SAFT schedule: held-out stacks nobody tuned to, and real data.

For each shifted simulator condition (held-out seeds), the default models are fine-tuned with
each schedule and every iteration's whole-stack output is scored against the ground truth
(PSNR, SSIM after a least-squares gain+offset fit), for haze (mean SR where the truth is empty
/ mean SR on structures) and for resolution (Fourier ring correlation between the SR outputs of
the even and the odd frames: independent noise draws, so texture made from noise does not
count). Each condition also has a bicubic row and, where a network trained on that condition
is given (``--oracle NAME=PATH``), a ceiling row. The real SFSRM microtubule frame is scored
against its registered STORM window. Crops of input, bicubic, pretrained, recommended and
truth are drawn side by side.

    python bench/science.py --out docs            # writes docs/science.md, .json, figures
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import binary_dilation, gaussian_filter, zoom

from saft_core import simulate
from saft_core.edges import compute_edges
from saft_core.finetune import finetune
from saft_core.io import read_stack
from saft_core.networks import load_model
from saft_core.normalise import normalise_edges, normalise_lr
from saft_core.params import SaftParams
from saft_core.tiling import tiled_apply
from saft_core.truth_metrics import quality_vs_gt

ROOT = Path(__file__).resolve().parents[1]
# Order matters: a condition's held-out seed is HELD_OUT_SEED + its index here.
CONDITIONS = {
    name: simulate.PRESETS[name]
    for name in (
        "low_snr",
        "wide_psf",
        "high_background",
        "other_structure",
        "oversampled_haze",
        "fast_motion",
    )
}
HELD_OUT_SEED = 777_000
MODELS = {"sr": "default", "den": "default"}  # overridable for experiments (--sr-model)
CROP_LR = 32  # LR pixels per side of the image crops in the figure
STORM_BLUR_SR_PX = 2.0  # the STORM image blurred by this much before Pearson r (issue 11)


def held_out_seed(name: str, offset: int = 0) -> int:
    """The simulator seed of a condition's held-out stack; ``offset`` draws other stacks."""
    return HELD_OUT_SEED + list(CONDITIONS).index(name) + 100 * offset


def default_preset() -> str:
    """The preset a user gets when none is given (declared once, in saft_core.params)."""
    from saft_core import params

    return getattr(params, "DEFAULT_PRESET", "reference")


def schedule(name: str, iterations: int) -> SaftParams:
    """``default``: what a user gets with no preset; ``reference``: the authors' loop."""
    if name == "default":
        return SaftParams.preset(default_preset(), iterations=iterations)
    if name == "reference":
        return SaftParams.preset("reference", iterations=iterations, background="mean")
    preset, _, rest = name.partition(":")
    changes = {k: _parse(v) for k, v in (kv.split("=") for kv in rest.split(",") if kv)}
    return SaftParams.preset(preset, iterations=iterations, **changes)


# -- scoring ---------------------------------------------------------------------------------


def super_resolve(model: torch.nn.Module, x: np.ndarray, e: np.ndarray) -> np.ndarray:
    """|model([e, x])| for a normalised stack, (T, sH, sW) in normalised units."""
    inp = torch.from_numpy(np.stack([e, x], axis=1).astype(np.float32))
    out = tiled_apply(model.eval(), inp, int(model.config.scale), tile=128, overlap=24)
    return out.abs()[:, 0].numpy()


def bicubic(x: np.ndarray, scale: int = simulate.SCALE) -> np.ndarray:
    """Bicubic upsampling of a normalised stack: the baseline every SR output must beat."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[:, None]
    return F.interpolate(t, scale_factor=scale, mode="bicubic", align_corners=False)[:, 0].numpy()


def background_ratio(sr: np.ndarray, gt: np.ndarray) -> float:
    """Mean SR where the truth is empty / mean SR where it has structure (haze measure)."""
    ratios = []
    for s, g in zip(sr, gt, strict=True):
        peak = g.max()
        structure = g > 0.25 * peak
        empty = ~binary_dilation(g > 0.02 * peak, iterations=4)
        if structure.any() and empty.any():
            ratios.append(float(s[empty].mean() / max(s[structure].mean(), 1e-12)))
    return float(np.mean(ratios)) if ratios else float("nan")


def frc_halves(sr: np.ndarray) -> float | None:
    """FRC resolution (SR px) between the mean SR of the even and of the odd frames."""
    if sr.shape[0] < 2:
        return None
    try:
        from saft_core.resolution import frc_resolution
    except ImportError:
        return None
    value = frc_resolution(sr[0::2].mean(0), sr[1::2].mean(0))
    return float(value) if value is not None and math.isfinite(value) else None


def score(sr: np.ndarray, gt: np.ndarray) -> dict[str, float | None]:
    """Every per-iteration figure of one SR stack against its truth."""
    q = quality_vs_gt(sr, gt)
    return {
        "psnr": q["psnr"],
        "ssim": q["ssim"],
        "haze": background_ratio(sr, gt),
        "frc": frc_halves(sr),
    }


def _finetune_scored(
    lr: np.ndarray,
    edges: np.ndarray,
    params: SaftParams,
    x: np.ndarray,
    e: np.ndarray,
    figures: Callable[[Any, np.ndarray], dict[str, Any]],
) -> tuple[Any, list[dict[str, Any]], dict[int, np.ndarray]]:
    """Fine-tune the default models, super-resolving the normalised stack (``x``, ``e``) at
    every iteration: the summary, ``figures(result, sr)`` per iteration, each SR's frame 0."""
    rows: list[dict[str, Any]] = []
    shown: dict[int, np.ndarray] = {}

    def on_iteration(result: Any) -> None:
        sr = super_resolve(load_model(result.checkpoint, "sr"), x, e)
        shown[result.iteration] = sr[0]
        rows.append(figures(result, sr))

    summary = finetune(
        lr, edges, params, sr_model=MODELS["sr"], den_model=MODELS["den"], on_iteration=on_iteration
    )
    return summary, rows, shown


def _crops(
    crop: Callable[[np.ndarray], list[list[float]]],
    x: np.ndarray,
    bic: np.ndarray,
    shown: dict[int, np.ndarray],
    rec: int,
) -> dict[str, list[list[float]]]:
    """The figure's crops of frame 0: input (nearest, 4x), bicubic, pretrained, recommended."""
    return {
        "input": crop(np.kron(x[0], np.ones((4, 4), np.float32))),
        "bicubic": crop(bic[0]),
        "pretrained": crop(shown[0]),
        "recommended": crop(shown[rec]),
    }


# -- one simulated condition -------------------------------------------------------------------


def run_condition(
    name: str, variant: str, *, iterations: int, frames: int, size: int, seed: int
) -> dict[str, Any]:
    """Fine-tune the default models on one held-out stack; score bicubic and every iteration."""
    cond = CONDITIONS[name]
    sim = simulate.simulate_stack(cond, frames, (size, size), seed=seed)
    edges = compute_edges(sim.lr)
    x, e = normalise_lr(sim.lr), normalise_edges(edges)
    params = schedule(variant, iterations)

    def figures(result: Any, sr: np.ndarray) -> dict[str, Any]:
        return {
            "iteration": result.iteration,
            "fidelity": result.losses.get("fidelity"),
            "objective": result.losses.get("objective"),
            "record_resolution": result.resolution,
            "record_frc": getattr(result, "frc_resolution", None),
            "seconds": result.seconds,
            **score(sr, sim.gt),
        }

    t0 = time.perf_counter()
    summary, rows, shown = _finetune_scored(sim.lr, edges, params, x, e, figures)
    rec = summary.recommended_iteration if summary.recommended_iteration is not None else 0
    bic = bicubic(x)
    return {
        "condition": name,
        "variant": variant,
        "seed": seed,
        "params": params.to_dict(),
        "sigma": summary.sigma,
        "recommended": rec,
        "seconds": time.perf_counter() - t0,
        "bicubic": score(bic, sim.gt),
        "rows": rows,
        "crops": {**_crops(_crop, x, bic, shown, rec), "truth": _crop(sim.gt[0])},
    }


def oracle_condition(
    name: str, model_path: Path, *, frames: int, size: int, seed: int
) -> dict[str, Any]:
    """A network trained on the condition itself (no SAFT): the ceiling for SAFT."""
    sim = simulate.simulate_stack(CONDITIONS[name], frames, (size, size), seed=seed)
    x, e = normalise_lr(sim.lr), normalise_edges(compute_edges(sim.lr))
    sr = super_resolve(load_model(model_path, "sr"), x, e)
    return {"condition": name, "model": str(model_path), **score(sr, sim.gt)}


def _crop(img: np.ndarray) -> list[list[float]]:
    """The top-left CROP_LR x CROP_LR LR-pixel window (SR grid) of a frame, for the figure."""
    n = CROP_LR * simulate.SCALE
    return np.asarray(img[:n, :n], dtype=np.float32).round(5).tolist()


# -- the real microtubule frame ----------------------------------------------------------------

# The STORM image covers widefield rows 50:306, cols 48:304 at 5x its sampling (found by
# cross-correlation, see tests/core/test_metrics.py), not the whole frame at 4x.
STORM_LR_ORIGIN = (50, 48)
STORM_LR_SIZE = 256
STORM_PER_LR = 5


def storm_on_sr_grid(storm: np.ndarray, scale: int = 4) -> tuple[np.ndarray, tuple[slice, ...]]:
    """STORM resampled to the SR grid, and the SR-grid window it covers."""
    resampled = zoom(storm[0].astype(np.float32), scale / STORM_PER_LR, order=1)
    y0, x0 = (scale * o for o in STORM_LR_ORIGIN)
    n = scale * STORM_LR_SIZE
    return resampled[None, :n, :n], (slice(None), slice(y0, y0 + n), slice(x0, x0 + n))


def storm_agreement(sr: np.ndarray, storm: np.ndarray) -> dict[str, float]:
    """Pearson r with the STORM image blurred by 2 SR px, and PSNR/SSIM after a fit."""
    blurred = gaussian_filter(storm[0], STORM_BLUR_SR_PX)
    r = float(np.corrcoef(sr[0].ravel(), blurred.ravel())[0, 1])
    q = quality_vs_gt(sr, blurred[None])
    return {"storm_r": r, "storm_psnr": q["psnr"], "storm_ssim": q["ssim"]}


def real_microtubule(variant: str, iterations: int) -> dict[str, Any]:
    """The published SFSRM frame against its registered STORM window, every iteration."""
    ex = ROOT / "examples" / "sfsrm-microtubule"
    wf = read_stack(ex / "widefield.tif").data
    edge = compute_edges(wf)  # what a user gets without NanoJ
    storm, window = storm_on_sr_grid(read_stack(ex / "storm_reference.tif").data)
    x, e = normalise_lr(wf), normalise_edges(edge)

    def figures(result: Any, sr: np.ndarray) -> dict[str, Any]:
        return {
            "iteration": result.iteration,
            "fidelity": result.losses.get("fidelity"),
            "record_resolution": result.resolution,
            **storm_agreement(sr[window], storm),
        }

    summary, rows, shown = _finetune_scored(wf, edge, schedule(variant, iterations), x, e, figures)
    rec = summary.recommended_iteration if summary.recommended_iteration is not None else 0
    bic = bicubic(x)
    y0, x0 = (4 * o + 160 for o in STORM_LR_ORIGIN)  # a crop inside the STORM window
    n = CROP_LR * 4 * 2

    def crop(img: np.ndarray) -> list[list[float]]:
        return np.asarray(img[y0 : y0 + n, x0 : x0 + n], np.float32).round(5).tolist()

    storm_full = np.zeros_like(bic[0])
    storm_full[window[1:]] = gaussian_filter(storm[0], STORM_BLUR_SR_PX)
    return {
        "variant": variant,
        "recommended": rec,
        "sigma": summary.sigma,
        "bicubic": storm_agreement(bic[window], storm),
        "rows": rows,
        "crops": {**_crops(crop, x, bic, shown, rec), "STORM": crop(storm_full)},
    }


# -- driver -------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--size", type=int, default=64, help="LR pixels per side")
    ap.add_argument("--iterations", type=int, default=6)
    ap.add_argument("--conditions", default=",".join(CONDITIONS))
    ap.add_argument("--variants", default="default,reference")
    ap.add_argument("--seed-offset", type=int, default=0, help="draw other held-out stacks")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--oracle",
        action="append",
        default=[],
        help="CONDITION=PATH of an SR model trained on that condition (a ceiling row)",
    )
    ap.add_argument("--no-real", action="store_true")
    ap.add_argument("--sr-model", default="default")
    ap.add_argument("--den-model", default="default")
    ap.add_argument("--render-only", action="store_true", help="re-render from science.json")
    args = ap.parse_args()
    if args.render_only:
        render(json.loads((args.out / "science.json").read_text()), args.out)
        return
    torch.set_num_threads(args.threads)
    MODELS.update(sr=args.sr_model, den=args.den_model)
    variants = [v for v in args.variants.split(",") if v]
    results: dict[str, Any] = {"conditions": [], "oracles": [], "real": []}
    for name in (n for n in args.conditions.split(",") if n):
        seed = held_out_seed(name, args.seed_offset)
        for variant in variants:
            res = run_condition(
                name,
                variant,
                iterations=args.iterations,
                frames=args.frames,
                size=args.size,
                seed=seed,
            )
            results["conditions"].append(res)
            _print(res)
    for spec in args.oracle:
        name, _, path = spec.partition("=")
        results["oracles"].append(
            oracle_condition(
                name,
                Path(path),
                frames=args.frames,
                size=args.size,
                seed=held_out_seed(name, args.seed_offset),
            )
        )
    if not args.no_real:
        for variant in variants:
            run = real_microtubule(variant, args.iterations)
            results["real"].append(run)
            print(f"== real microtubule [{variant}] recommended {run['recommended']}")
            for r in run["rows"]:
                print("  " + " ".join(f"{k}={_fmt(v)}" for k, v in r.items()))
    results["setup"] = {
        "frames": args.frames,
        "size": args.size,
        "iterations": args.iterations,
        "seed_offset": args.seed_offset,
        "threads": args.threads,
        "torch": torch.__version__,
        "default_preset": default_preset(),
        "default_params": schedule("default", args.iterations).to_dict(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    render(results, args.out)  # draws the crops figure, then the crops are left out of the JSON
    (args.out / "science.json").write_text(json.dumps(without_crops(results), default=_json))
    print(f"wrote {args.out / 'science.json'} and {args.out / 'science.md'}")


# -- report -------------------------------------------------------------------------------------


def _row(res: dict[str, Any], k: int) -> dict[str, Any]:
    return {r["iteration"]: r for r in res["rows"]}[k]


def best_iteration(res: dict[str, Any]) -> int:
    """The iteration with the highest PSNR vs the truth (what the recommendation should find)."""
    return max(res["rows"], key=lambda r: r["psnr"])["iteration"]


def targets(res: dict[str, Any], ceiling: float | None) -> dict[str, bool | None]:
    """Issue 11's targets for the recommended iteration of one run."""
    pre, rec = _row(res, 0), _row(res, res["recommended"])
    best = _row(res, best_iteration(res))
    gain = rec["psnr"] - pre["psnr"]
    room = None if ceiling is None else ceiling - pre["psnr"]
    frc_ok = None
    if rec.get("frc") is not None and pre.get("frc") is not None:
        frc_ok = rec["frc"] <= 1.1 * pre["frc"]
    return {
        "not worse": gain >= -0.05,
        "≥ bicubic": rec["psnr"] >= res["bicubic"]["psnr"],
        "haze": rec["haze"] <= 1.05 * pre["haze"],
        "resolution": frc_ok,
        "stop": best["psnr"] - rec["psnr"] <= 0.2,
        "≥60% ceiling": None if room is None or room <= 0 else gain >= 0.6 * room,
    }


def _ceilings(results: dict[str, Any]) -> dict[str, float]:
    return {o["condition"]: o["psnr"] for o in results.get("oracles", [])}


def summary_rows(results: dict[str, Any], variant: str) -> list[str]:
    """Markdown rows for one schedule: bicubic, pretrained, recommended, best, ceiling."""
    ceilings = _ceilings(results)
    out = [
        "| condition | bicubic | pretrained | recommended (it.) | best (it.) | ceiling "
        "| haze pre → rec | FRC res. pre → rec (SR px) | targets |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for res in results["conditions"]:
        if res["variant"] != variant:
            continue
        pre, rec = _row(res, 0), _row(res, res["recommended"])
        b = best_iteration(res)
        met = targets(res, ceilings.get(res["condition"]))
        ceiling = ceilings.get(res["condition"])
        out.append(
            f"| {res['condition']} | {res['bicubic']['psnr']:.2f} | {pre['psnr']:.2f} "
            f"| {rec['psnr']:.2f} ({res['recommended']}) | {_row(res, b)['psnr']:.2f} ({b}) "
            f"| {_cell(ceiling)} | {pre['haze']:.3f} → {rec['haze']:.3f} "
            f"| {_cell(pre.get('frc'))} → {_cell(rec.get('frc'))} | {_targets_cell(met)} |"
        )
    return out


def _targets_cell(met: dict[str, bool | None]) -> str:
    return " ".join(f"{k} {'–' if v is None else '✓' if v else '✗'}" for k, v in met.items())


def iteration_table(res: dict[str, Any], cols: list[str]) -> list[str]:
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in res["rows"]:
        mark = " ★" if r["iteration"] == res["recommended"] else ""
        cells = [f"{r['iteration']}{mark}"] + [_cell(r.get(c)) for c in cols[1:]]
        out.append("| " + " | ".join(cells) + " |")
    return out


def without_crops(results: dict[str, Any]) -> dict[str, Any]:
    """The results without their image crops (megabytes of pixels; the figure holds them)."""
    strip = lambda runs: [{k: v for k, v in r.items() if k != "crops"} for r in runs]  # noqa: E731
    return {**results, "conditions": strip(results["conditions"]), "real": strip(results["real"])}


def crops_figure(results: dict[str, Any], variant: str, path: Path) -> bool:
    """Input, bicubic, pretrained, recommended, truth side by side: one row per condition."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    runs = [r for r in results["conditions"] if r["variant"] == variant]
    runs += [r for r in results.get("real", []) if r["variant"] == variant]
    if not runs or any("crops" not in r for r in runs):
        return path.is_file()  # re-rendered from science.json: keep the figure of the run
    cols = list(runs[0]["crops"])
    fig, axes = plt.subplots(len(runs), len(cols), figsize=(2.2 * len(cols), 2.2 * len(runs)))
    axes = np.atleast_2d(axes)
    for i, run in enumerate(runs):
        name = run.get("condition", "real microtubule")
        for j, (label, img) in enumerate(run["crops"].items()):
            a = np.asarray(img, dtype=np.float32)
            lo, hi = np.percentile(a, 0.5), np.percentile(a, 99.7)
            axes[i, j].imshow(np.clip((a - lo) / max(hi - lo, 1e-12), 0, 1), cmap="gray")
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            if i == 0 or label == "STORM":
                axes[i, j].set_title(label if label != "recommended" else "recommended", fontsize=9)
            if j == 0:
                axes[i, j].set_ylabel(name, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def render(results: dict[str, Any], out: Path) -> None:
    """docs/science.md from the JSON results (re-runnable without re-training)."""
    setup = results["setup"]
    default = setup["default_preset"]
    lines = [
        "# Evidence: what the default SAFT schedule does on data nobody tuned to",
        "",
        "Generated by `python bench/science.py` (raw numbers in `science.json`). Held-out "
        f"simulated stacks of {setup['frames']} frames of {setup['size']}x{setup['size']} LR "
        f"pixels (seed offset {setup['seed_offset']}), {setup['iterations']} iterations, the "
        f"shipped default models, {setup['threads']} CPU threads, torch {setup['torch']}. "
        "PSNR/SSIM vs the ground truth after a least-squares gain+offset fit, mean over all "
        "frames; haze = mean SR where the truth is empty / mean SR on structures; FRC res. = "
        "Fourier ring correlation resolution between the SR outputs of the even and the odd "
        "frames (SR px; independent noise, so texture made from noise does not count). "
        f"**default** = no preset given (`{default}`); **reference** = the authors' loop.",
        "",
    ]
    notes = out / "science-notes.md"
    if notes.is_file():  # the hand-written reading of these numbers
        lines += [notes.read_text().strip(), ""]
    variants = list(dict.fromkeys(r["variant"] for r in results["conditions"]))
    for variant in variants:
        lines += [f"## {variant}: PSNR (dB) at the recommended iteration", ""]
        lines += [*summary_rows(results, variant), ""]
        if crops_figure(results, variant, out / f"science-crops-{variant}.png"):
            lines += [
                f"![crops: input, bicubic, pretrained, recommended, truth "
                f"({variant})](science-crops-{variant}.png)",
                "",
            ]
    for run in results.get("real", []):
        lines += [
            f"## Real data: SFSRM microtubule frame [{run['variant']}]",
            "",
            "Agreement with the registered STORM window (widefield rows 50:306, cols 48:304 "
            f"at 5x): Pearson r with STORM blurred by {STORM_BLUR_SR_PX:g} SR px, and "
            "PSNR/SSIM after a gain+offset fit. Edge map: `saft edges` (what a user gets). "
            f"Bicubic: r {run['bicubic']['storm_r']:.3f}, PSNR "
            f"{run['bicubic']['storm_psnr']:.2f} dB.",
            "",
            *iteration_table(
                run, ["iteration", "fidelity", "record_resolution", "storm_r", "storm_psnr"]
            ),
            "",
        ]
    lines += ["## Every iteration", ""]
    cols = ["iteration", "fidelity", "psnr", "ssim", "haze", "frc", "record_resolution"]
    for res in results["conditions"]:
        lines += [
            f"### {res['condition']} [{res['variant']}] (★ recommended; bicubic "
            f"{res['bicubic']['psnr']:.2f} dB)",
            "",
            *iteration_table(res, cols),
            "",
        ]
    (out / "science.md").write_text("\n".join(lines) + "\n")


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _print(res: dict[str, Any]) -> None:
    print(
        f"== {res['condition']} [{res['variant']}] recommended {res['recommended']} "
        f"({res['seconds']:.0f} s) bicubic {res['bicubic']['psnr']:.2f}"
    )
    for r in res["rows"]:
        print("  " + " ".join(f"{k}={_fmt(v)}" for k, v in r.items()))


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _parse(v: str) -> Any:
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def _json(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return str(v)


if __name__ == "__main__":
    main()
