"""Evidence that SAFT suppresses artifacts: pretrained vs every SAFT iteration on shifted data.

For each shifted simulator condition (held-out seeds), the default model is fine-tuned with
SAFT and every iteration's whole-stack output is compared with the ground truth (PSNR, SSIM,
NRMSE after a least-squares gain+offset fit), with the LR input (SQUIRREL RSE/RSP), for
resolution (decorrelation, SR pixels) and for background haze (mean SR where the truth is
empty / mean SR on structures). Ablations switch one regulariser off. The real SFSRM
microtubule frame is scored against its widefield image and the STORM reference.

    python bench/science.py --out docs            # writes docs/science.md, .json, figures
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.ndimage import binary_dilation

from saft_core import simulate
from saft_core.edges import compute_edges
from saft_core.finetune import finetune
from saft_core.io import read_stack
from saft_core.metrics import artifact_metrics
from saft_core.networks import load_model
from saft_core.normalise import normalise_edges, normalise_lr
from saft_core.params import SaftParams
from saft_core.tiling import tiled_apply
from saft_core.truth_metrics import quality_vs_gt

ROOT = Path(__file__).resolve().parents[1]
SHIFTED = {
    "low_snr": simulate.LOW_SNR,
    "wide_psf": simulate.WIDE_PSF,
    "high_background": simulate.HIGH_BACKGROUND,
    "other_structure": simulate.OTHER_STRUCTURE,
}
HELD_OUT_SEED = 777_000
MODELS = {"sr": "default", "den": "default"}  # overridable for experiments (--sr-model)


def held_out_seed(name: str) -> int:
    """The simulator seed of a shifted condition's held-out stack (one per condition)."""
    return HELD_OUT_SEED + list(SHIFTED).index(name)


def super_resolve(model: torch.nn.Module, x: np.ndarray, e: np.ndarray) -> np.ndarray:
    """|model([e, x])| for a normalised stack, (T, sH, sW) in normalised units."""
    inp = torch.from_numpy(np.stack([e, x], axis=1).astype(np.float32))
    out = tiled_apply(model.eval(), inp, int(model.config.scale), tile=128, overlap=24)
    return out.abs()[:, 0].numpy()


def background_ratio(sr: np.ndarray, gt: np.ndarray) -> float:
    """Mean SR where the truth is empty / mean SR where it has structure (haze measure)."""
    ratios = []
    for s, g in zip(sr, gt, strict=True):
        peak = g.max()
        structure = g > 0.25 * peak
        near = binary_dilation(g > 0.02 * peak, iterations=4)
        empty = ~near
        if structure.any() and empty.any():
            ratios.append(float(s[empty].mean() / max(s[structure].mean(), 1e-12)))
    return float(np.mean(ratios)) if ratios else float("nan")


def score(sr: np.ndarray, sim: simulate.SimResult, x0: np.ndarray) -> dict[str, float]:
    """All per-iteration figures of one SR stack."""
    q = quality_vs_gt(sr, sim.gt)
    m = artifact_metrics(sr[0], x0, simulate.SCALE)
    return {**q, **m, "bg_ratio": background_ratio(sr, sim.gt)}


def run_condition(
    name: str,
    cond: simulate.SimCondition,
    params: SaftParams,
    *,
    frames: int,
    size: int,
    seed: int,
) -> dict[str, Any]:
    """Fine-tune the default model on one simulated stack; score every iteration."""
    sim = simulate.simulate_stack(cond, frames, (size, size), seed=seed)
    edges = compute_edges(sim.lr)
    x, e = normalise_lr(sim.lr), normalise_edges(edges)
    rows: list[dict[str, Any]] = []

    def on_iteration(result: Any) -> None:
        model = load_model(result.checkpoint, "sr")
        sr = super_resolve(model, x, e)
        rows.append(
            {
                "iteration": result.iteration,
                "loss": result.losses.get("total"),
                "objective": result.losses.get("objective"),
                "fidelity": result.losses.get("fidelity"),
                "seconds": result.seconds,
                **score(sr, sim, x[0]),
            }
        )

    t0 = time.perf_counter()
    summary = finetune(
        sim.lr,
        edges,
        params,
        sr_model=MODELS["sr"],
        den_model=MODELS["den"],
        on_iteration=on_iteration,
    )
    truth = artifact_metrics(sim.gt[0], x[0], simulate.SCALE)
    return {
        "condition": name,
        "params": params.to_dict(),
        "truth": {"rse": truth["rse"], "rsp": truth["rsp"], "resolution": truth["resolution"]},
        "recommended": summary.recommended_iteration,
        "sigma": summary.sigma,
        "seconds": time.perf_counter() - t0,
        "rows": rows,
    }


def oracle_condition(
    name: str, cond: simulate.SimCondition, model_path: Path, *, frames: int, size: int, seed: int
) -> dict[str, Any]:
    """A network trained on the shifted condition itself (no SAFT): the ceiling for SAFT."""
    sim = simulate.simulate_stack(cond, frames, (size, size), seed=seed)
    edges = compute_edges(sim.lr)
    x, e = normalise_lr(sim.lr), normalise_edges(edges)
    sr = super_resolve(load_model(model_path, "sr"), x, e)
    return {"condition": name, "model": str(model_path), **score(sr, sim, x[0])}


def resolve_variant(changes: dict[str, Any], cond: simulate.SimCondition) -> SaftParams:
    """SaftParams of a variant on one condition: ``preset`` names a preset; ``sigma="psf"``
    means the condition's own PSF sigma (what a microscopist sets from their optics), with a
    kernel of 2 * ceil(2.5 sigma) + 1 pixels."""
    changes = dict(changes)
    preset = changes.pop("preset", "reference")
    if changes.get("sigma") == "psf":
        sigma = float(cond.psf_sigma_lr)
        changes["sigma"] = sigma
        changes.setdefault("ksize", 2 * math.ceil(2.5 * sigma) + 1)
    return SaftParams.preset(preset, **changes)


def targets(pre: dict[str, Any], rec: dict[str, Any]) -> dict[str, bool]:
    """The issue's four targets at the recommended iteration."""

    def ok(v: Any) -> bool:
        return v is not None and math.isfinite(v)

    return {
        "psnr": rec["psnr"] - pre["psnr"] >= 1.5,
        "rse": ok(rec.get("rse")) and ok(pre.get("rse")) and rec["rse"] <= 0.75 * pre["rse"],
        # "without losing resolution": at most 10% coarser (a finer estimate is no loss)
        "resolution": ok(rec.get("resolution"))
        and ok(pre.get("resolution"))
        and rec["resolution"] <= 1.1 * pre["resolution"],
        "bg": rec["bg_ratio"] <= pre["bg_ratio"],
    }


# The STORM image covers widefield rows 50:306, cols 48:304 at 5x its sampling (found by
# cross-correlation, see tests/core/test_metrics.py), not the whole frame at 4x.
STORM_LR_ORIGIN = (50, 48)
STORM_LR_SIZE = 256
STORM_PER_LR = 5


def storm_on_sr_grid(storm: np.ndarray, scale: int = 4) -> tuple[np.ndarray, tuple[slice, ...]]:
    """STORM resampled to the SR grid, and the SR-grid window it covers."""
    from scipy.ndimage import zoom

    resampled = zoom(storm[0].astype(np.float32), scale / STORM_PER_LR, order=1)
    y0, x0 = (scale * o for o in STORM_LR_ORIGIN)
    n = scale * STORM_LR_SIZE
    return resampled[None, :n, :n], (slice(None), slice(y0, y0 + n), slice(x0, x0 + n))


def real_microtubule(params: SaftParams) -> dict[str, Any]:
    """The published SFSRM frame: RSE/RSP vs widefield, quality vs the registered STORM image."""
    ex = ROOT / "examples" / "sfsrm-microtubule"
    wf = read_stack(ex / "widefield.tif").data
    edge = read_stack(ex / "edgemap_nanoj_srrf.tif").data
    storm, window = storm_on_sr_grid(read_stack(ex / "storm_reference.tif").data)
    x, e = normalise_lr(wf), normalise_edges(edge)
    rows: list[dict[str, Any]] = []

    def on_iteration(result: Any) -> None:
        sr = super_resolve(load_model(result.checkpoint, "sr"), x, e)
        rows.append(
            {
                "iteration": result.iteration,
                "loss": result.losses.get("total"),
                "objective": result.losses.get("objective"),
                "fidelity": result.losses.get("fidelity"),
                **artifact_metrics(sr[0], x[0], 4),
                **{f"storm_{k}": v for k, v in quality_vs_gt(sr[window], storm).items()},
            }
        )

    summary = finetune(
        wf,
        edge,
        params,
        sr_model=MODELS["sr"],
        den_model=MODELS["den"],
        on_iteration=on_iteration,
    )
    return {"recommended": summary.recommended_iteration, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--size", type=int, default=64, help="LR pixels per side")
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--lr", type=float, default=None, help="default: SaftParams' default")
    ap.add_argument("--conditions", default=",".join(SHIFTED))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-ablation", action="store_true")
    ap.add_argument("--ablation-condition", default="wide_psf", choices=list(SHIFTED))
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
    ap.add_argument("--oracles-only", action="store_true", help="add --oracle rows to science.json")
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        help="extra parameter set NAME:key=value,... (preset=adaptive, sigma=psf allowed)",
    )
    args = ap.parse_args()
    if args.render_only or args.oracles_only:
        results = json.loads((args.out / "science.json").read_text())
        if args.oracles_only:  # add ceiling rows to an existing run
            torch.set_num_threads(args.threads)
            known = {o["condition"]: o for o in results.get("oracles", [])}
            for spec in args.oracle:
                name, _, path = spec.partition("=")
                known[name] = oracle_condition(
                    name,
                    SHIFTED[name],
                    Path(path),
                    frames=results["setup"]["frames"],
                    size=results["setup"]["size"],
                    seed=held_out_seed(name),
                )
            results["oracles"] = list(known.values())
            (args.out / "science.json").write_text(json.dumps(results, indent=1, default=_json))
        render(results, args.out)
        return
    torch.set_num_threads(args.threads)
    MODELS.update(sr=args.sr_model, den=args.den_model)
    common: dict[str, Any] = {"iterations": args.iterations}
    if args.lr is not None:
        common["lr"] = args.lr
    variants: dict[str, dict[str, Any]] = {
        "saft": dict(common),  # the reference schedule with this project's background fit
        "reference": {**common, "background": "mean"},  # the authors' loop as published
        "adaptive": {**common, "preset": "adaptive", "sigma": "psf"},
    }
    for spec in args.variant:
        vname, _, kvs = spec.partition(":")
        changes = {k: _parse(v) for k, v in (kv.split("=") for kv in kvs.split(",") if kv)}
        variants[vname] = {**common, **changes}

    results: dict[str, Any] = {"conditions": [], "ablations": [], "oracles": [], "real": None}
    names = [n for n in args.conditions.split(",") if n]
    for name in names:
        for vname, changes in variants.items():
            res = run_condition(
                name,
                SHIFTED[name],
                resolve_variant(changes, SHIFTED[name]),
                frames=args.frames,
                size=args.size,
                seed=held_out_seed(name),
            )
            res["variant"] = vname
            results["conditions"].append(res)
            _print(res)
    for spec in args.oracle:
        name, _, path = spec.partition("=")
        results["oracles"].append(
            oracle_condition(
                name,
                SHIFTED[name],
                Path(path),
                frames=args.frames,
                size=args.size,
                seed=held_out_seed(name),
            )
        )
    if not args.no_ablation:
        # One switch at a time on the adaptive schedule: the reference's three regularisers,
        # then each of this project's additions.
        name = args.ablation_condition
        base = variants["adaptive"]
        switches = {
            "continuity_level=0": {"continuity_level": 0.0},
            "sparse_level=0": {"sparse_level": 0.0},
            "consistency_level=0": {"consistency_level": 0.0},
            "consistency_level=1 (reference tie)": {"consistency_level": 1.0},
            "ema=0 (no averaging)": {"ema": 0.0},
            "warmup=0": {"warmup": 0},
            "haze_level=0": {"haze_level": 0.0},
            "background=fit (free offset)": {"background": "fit"},
        }
        for label, change in switches.items():
            res = run_condition(
                name,
                SHIFTED[name],
                resolve_variant({**base, **change}, SHIFTED[name]),
                frames=args.frames,
                size=args.size,
                seed=held_out_seed(name),
            )
            res["variant"] = f"adaptive, {label}"
            results["ablations"].append(res)
            _print(res)
    if not args.no_real:
        results["real"] = {
            # the published data's own RSF sigma: the default 1.1 LR px
            vname: real_microtubule(
                resolve_variant(
                    {k: v for k, v in variants[vname].items() if k != "sigma"},
                    simulate.TRAINING,
                )
            )
            for vname in ("saft", "adaptive")
        }
    results["setup"] = {
        "frames": args.frames,
        "size": args.size,
        "threads": args.threads,
        "torch": torch.__version__,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "science.json").write_text(json.dumps(results, indent=1, default=_json))
    render(results, args.out)
    print(f"wrote {args.out / 'science.json'} and {args.out / 'science.md'}")


def _at(res: dict[str, Any], k: int | None) -> dict[str, Any]:
    rows = {r["iteration"]: r for r in res["rows"]}
    return rows.get(k if k is not None else max(rows), rows[max(rows)])


def _pct(new: float | None, old: float | None) -> str:
    if new is None or old is None or not old:
        return "n/a"
    return f"{100 * (new - old) / abs(old):+.0f}%"


def summary_rows(results: dict[str, Any]) -> list[str]:
    """Markdown rows: pretrained vs the recommended iteration, per condition and variant."""
    out = [
        "| condition | variant | rec. it. | PSNR pre → SAFT (dB) | ΔPSNR | SSIM pre → SAFT "
        "| RSE vs LR | resolution | bg ratio pre → SAFT | time (s) | targets met |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for res in results["conditions"] + results["ablations"]:
        pre, rec = _at(res, 0), _at(res, res["recommended"])
        met = targets(pre, rec)
        out.append(
            f"| {res['condition']} | {res['variant']} | {res['recommended']} "
            f"| {pre['psnr']:.2f} → {rec['psnr']:.2f} | {rec['psnr'] - pre['psnr']:+.2f} "
            f"| {pre['ssim']:.3f} → {rec['ssim']:.3f} | {_pct(rec.get('rse'), pre.get('rse'))} "
            f"| {_pct(rec.get('resolution'), pre.get('resolution'))} "
            f"| {pre['bg_ratio']:.3f} → {rec['bg_ratio']:.3f} | {res['seconds']:.0f} "
            f"| {_targets_cell(met) if res['recommended'] else 'kept pretrained'} |"
        )
    return out


def _targets_cell(met: dict[str, bool]) -> str:
    names = {"psnr": "PSNR", "rse": "RSE", "resolution": "res", "bg": "bg"}
    return " ".join(f"{names[k]} {'✓' if v else '✗'}" for k, v in met.items())


def floor_rows(results: dict[str, Any]) -> list[str]:
    """What the ground truth itself scores against the LR: the floor of the RSE target."""
    out = [
        "| condition | RSE pretrained | RSE of the truth | best possible change | "
        "resolution of the truth |",
        "|---|---|---|---|---|",
    ]
    seen = set()
    for res in results["conditions"]:
        if res["condition"] in seen or "truth" not in res:
            continue
        seen.add(res["condition"])
        pre, truth = _at(res, 0), res["truth"]
        out.append(
            f"| {res['condition']} | {_cell(pre.get('rse'))} | {_cell(truth['rse'])} "
            f"| {_pct(truth['rse'], pre.get('rse'))} | {_cell(truth['resolution'])} |"
        )
    return out


def oracle_rows(results: dict[str, Any]) -> list[str]:
    """Ceiling rows: networks trained on the shifted condition, against SAFT's best."""
    out = [
        "| condition | pretrained PSNR | best SAFT (adaptive, any iteration) | "
        "trained on this condition |",
        "|---|---|---|---|",
    ]
    for orc in results.get("oracles", []):
        runs = [
            r
            for r in results["conditions"]
            if r["condition"] == orc["condition"] and r["variant"] == "adaptive"
        ]
        if not runs:
            continue
        pre = _at(runs[0], 0)["psnr"]
        best = max(row["psnr"] for row in runs[0]["rows"])
        out.append(f"| {orc['condition']} | {pre:.2f} | {best:.2f} | {orc['psnr']:.2f} |")
    return out


def iteration_table(res: dict[str, Any]) -> list[str]:
    cols = [
        "iteration",
        "loss",
        "objective",
        "fidelity",
        "psnr",
        "ssim",
        "nrmse",
        "rse",
        "rsp",
        "resolution",
        "bg_ratio",
    ]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in res["rows"]:
        mark = " ★" if r["iteration"] == res["recommended"] else ""
        cells = [f"{r['iteration']}{mark}"] + [_cell(r.get(c)) for c in cols[1:]]
        out.append("| " + " | ".join(cells) + " |")
    return out


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def plot(results: dict[str, Any], path: Path) -> bool:
    """PSNR and background ratio per iteration, one line per condition/variant."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    # colour = condition, line style = variant, so twelve lines stay tellable apart
    conditions = list(dict.fromkeys(r["condition"] for r in results["conditions"]))
    variants = list(dict.fromkeys(r["variant"] for r in results["conditions"]))
    styles = ["o:", "s--", "D-", "^-.", "v-"]
    for res in results["conditions"]:
        its = [r["iteration"] for r in res["rows"]]
        label = f"{res['condition']} [{res['variant']}]"
        kw = {
            "color": f"C{conditions.index(res['condition']) % 10}",
            "label": label,
            "markersize": 4,
        }
        fmt = styles[variants.index(res["variant"]) % len(styles)]
        axes[0].plot(its, [r["psnr"] - res["rows"][0]["psnr"] for r in res["rows"]], fmt, **kw)
        axes[1].plot(its, [r.get("rse") or np.nan for r in res["rows"]], fmt, **kw)
        axes[2].plot(its, [r["bg_ratio"] for r in res["rows"]], fmt, **kw)
    for ax, title in zip(
        axes, ("ΔPSNR vs pretrained (dB)", "RSE vs LR", "background ratio"), strict=True
    ):
        ax.set_title(title)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def render(results: dict[str, Any], out: Path) -> None:
    """docs/science.md from the JSON results (re-runnable without re-training)."""
    setup = results["setup"]
    lines = [
        "# Evidence: does SAFT suppress artifacts without losing resolution?",
        "",
        "Generated by `python bench/science.py` (raw numbers in `science.json`). Held-out "
        f"simulated stacks of {setup['frames']} frames of {setup['size']}x{setup['size']} LR "
        f"pixels per shifted condition, the shipped default models, {setup['threads']} CPU "
        f"threads, torch {setup['torch']}. PSNR/SSIM/NRMSE vs the ground truth after a "
        "least-squares gain+offset fit, mean over all frames; RSE/RSP of frame 0 vs its LR "
        "frame (SQUIRREL); resolution = decorrelation estimate in SR pixels; background "
        "ratio = mean SR where the truth is empty / mean SR on structures (haze).",
        "",
    ]
    notes = out / "science-notes.md"
    if notes.is_file():  # the hand-written reading of these numbers
        lines += [notes.read_text().strip(), ""]
    lines += [
        "## Pretrained vs recommended iteration",
        "",
        *summary_rows(results),
        "",
        "### What the truth itself scores",
        "",
        "The ground-truth image, scored against the same LR frame (SQUIRREL, frame 0): no "
        "SR output can fit the noisy LR frame much better than the truth does.",
        "",
        *floor_rows(results),
        "",
    ]
    if results.get("oracles"):
        lines += [
            "### Ceiling: a network trained on the shifted condition",
            "",
            "`saft train-base` recipe (1400 SR steps) on the shifted condition itself "
            "(`bench/train_default.py --condition NAME`), scored on the same held-out stack.",
            "",
            *oracle_rows(results),
            "",
        ]
    if plot(results, out / "science.png"):
        lines += ["![per-iteration figures](science.png)", ""]
    lines += ["## Every iteration", ""]
    for res in results["conditions"] + results["ablations"]:
        lines += [f"### {res['condition']} [{res['variant']}] (★ recommended)", ""]
        lines += [*iteration_table(res), ""]
    real = results.get("real")
    if real and "rows" in real:  # older single-variant results
        real = {"saft": real}
    for vname, run in (real or {}).items():
        lines += [
            f"## Real data: SFSRM microtubule frame [{vname}]",
            "",
            "RSE/RSP vs the widefield frame; PSNR/SSIM vs the STORM image resampled onto the "
            "SR grid of the region it covers (widefield rows 50:306, cols 48:304 at 5x).",
            "",
        ]
        cols = [
            "iteration",
            "loss",
            "objective",
            "fidelity",
            "rse",
            "rsp",
            "resolution",
            "storm_psnr",
            "storm_ssim",
        ]
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for r in run["rows"]:
            mark = " ★" if r["iteration"] == run["recommended"] else ""
            lines.append(
                "| "
                + " | ".join([f"{r['iteration']}{mark}"] + [_cell(r.get(c)) for c in cols[1:]])
                + " |"
            )
        lines.append("")
    (out / "science.md").write_text("\n".join(lines) + "\n")


def _print(res: dict[str, Any]) -> None:
    print(
        f"== {res['condition']} [{res['variant']}] recommended {res['recommended']} "
        f"({res['seconds']:.0f} s)"
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
