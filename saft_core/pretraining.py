"""Training of the default (pre-fine-tuning) SR network and DEN on simulated data.

Why: SAFT needs a pretrained SFSRM-style network to adapt; the shipped defaults are trained
here, on the simulator's TRAINING condition, so the artifact experiments start from a known
training distribution. Normalisation matches fine-tuning and reconstruction exactly:

    x          = LR / max(LR stack)                  (normalise_lr; LR peak = 1)
    e          = compute_edges(LR) / 255             (normalise_edges)
    SR target  = gt / max(LR stack), on the 4x grid  (structure only: no background, no offset)
    DEN target = noiseless LR / max(LR stack)        (expected counts, background and offset in)

RSF(SR target) (avgpool 4x + PSF blur) equals the DEN target minus background and offset,
i.e. it matches it after the gain + offset fit that SAFT's degradation loss applies, so the
network learns to output structure without haze.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from saft_core.networks import (
    TRAINING_CONDITION,
    DENConfig,
    SRConfig,
    build_den,
    build_sr,
    count_parameters,
    save_checkpoint,
    training_condition,
)
from saft_core.normalise import lr_scale, normalise_edges
from saft_core.simulate import (
    PRESETS,
    SCALE,
    SimCondition,
    SimResult,
    sample_condition,
    simulate_stack,
)
from saft_core.truth_metrics import psnr, quality_vs_gt

ProgressFn = Callable[[int, int, dict[str, Any]], None]
CARD_FORMAT = "saft-model-card/1"
VALIDATION_SEED_BASE = 900_000  # validation stacks never share a seed with training stacks
LOG_POINTS = 20  # loss-history entries kept in the card
NOMINAL_PIXEL_UM = 0.1  # the simulator's camera pixel: one SR pixel ~ 25 nm
BROAD = "broad"  # condition name: every field draws its own condition (simulate.sample_condition)
SHIPPED_STEPS = 3000  # SR steps of the shipped run (bench/train_default.py, saft train-base)


@dataclass(frozen=True)
class TrainConfig:
    """What the default networks are trained on and how (sizes in LR pixels)."""

    # nf=16, nb=3 beat nf=32, nb=2 per CPU second in pilot runs (the 4x-grid convs cost nf^2).
    sr: SRConfig = field(default_factory=lambda: SRConfig(nf=16, nb=3, gc=16, scale=SCALE))
    den: DENConfig = field(default_factory=DENConfig)
    condition: str = BROAD  # a simulate.PRESETS name, or BROAD (the shipped networks)
    n_stacks: int = 96  # independent simulated fields of view
    frames_per_stack: int = 4  # frames per field (correlated: same structures, moved)
    lr_size: int = 96  # LR pixels per side of each simulated field
    crop: int = 32  # LR pixels per side of a training crop
    batch: int = 8  # SR crops per step
    den_batch: int = 16  # DEN crops per step
    lr: float = 1e-3  # Adam peak learning rate (SR); cosine decay to lr * final_lr_frac
    den_lr: float = 1e-3
    final_lr_frac: float = 0.02
    warmup: int = 50  # linear warm-up steps
    grad_weight: float = 0.1  # weight of the L1 loss on finite-difference gradients (SR)
    den_steps: int | None = None  # None -> half the SR steps (the residual DEN learns fast)
    val_frames: int = 4
    val_size: int = 128  # LR pixels per side of the held-out validation stack
    val_stacks: int = 6  # held-out stacks (each its own condition when BROAD)

    def condition_obj(self) -> SimCondition:
        """The single condition (for BROAD: the TRAINING preset, used only for reporting)."""
        return PRESETS["training" if self.condition == BROAD else self.condition]

    def condition_for(self, sim_seed: int) -> SimCondition:
        """The condition of the field simulated with ``sim_seed``."""
        if self.condition == BROAD:
            return sample_condition(np.random.default_rng([sim_seed, 7]))
        return PRESETS[self.condition]


@dataclass
class TrainingData:
    """Normalised training arrays (float32): x, e (N, H, W); sr_t (N, 4H, 4W); den_t (N, H, W)."""

    x: np.ndarray
    e: np.ndarray
    sr_t: np.ndarray
    den_t: np.ndarray


# -- public entry point --------------------------------------------------------------------


def train_base(
    out_dir: Path,
    *,
    steps: int | None = None,
    seed: int = 0,
    threads: int | None = None,
    progress: ProgressFn | None = None,
    config: TrainConfig | None = None,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """Train default SR + DEN; write default_{sr,den}.pth, MODEL_CARD.md, card.json; return card.

    ``steps`` SR optimisation steps (DEN: ``config.den_steps`` or half); ``threads`` torch
    CPU threads (None keeps torch's setting); ``progress(done, total, info)`` after each data
    field and each step; edges of the simulated training fields are cached in ``cache_dir``
    (default ``out_dir/cache``) because SRRF dominates data preparation.
    """
    steps = SHIPPED_STEPS if steps is None else steps
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    cfg = config or TrainConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir) if cache_dir is not None else out_dir / "cache"
    den_steps = cfg.den_steps if cfg.den_steps is not None else max(steps // 2, 1)
    total = cfg.n_stacks + steps + den_steps
    done = [0]

    def tick(info: dict[str, Any]) -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], total, info)

    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        if threads is not None:
            torch.set_num_threads(int(threads))
        torch.use_deterministic_algorithms(True, warn_only=True)
        t0 = time.perf_counter()
        data = make_training_data(cfg, seed, cache, on_stack=lambda i: tick({"phase": "data"}))
        t_data = time.perf_counter() - t0

        t0 = time.perf_counter()
        sr, sr_hist = _train_sr(data, cfg, steps, seed, tick)
        t_sr = time.perf_counter() - t0
        t0 = time.perf_counter()
        den, den_hist = _train_den(data, cfg, den_steps, seed, tick)
        t_den = time.perf_counter() - t0

        t0 = time.perf_counter()
        metrics = validate(cfg, seed, sr, den)
        t_eval = time.perf_counter() - t0
        n_threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)

    seconds = {
        "data": round(t_data, 1),
        "sr": round(t_sr, 1),
        "den": round(t_den, 1),
        "eval": round(t_eval, 1),
        "total": round(time.perf_counter() - started, 1),
        # CPU time of this process: the wall time above grows when the machine is shared.
        "cpu_total": round(time.process_time() - cpu_started, 1),
    }
    card = _card(cfg, seed, steps, den_steps, n_threads, seconds, sr, den, metrics)
    card["loss_history"] = {"sr": sr_hist, "den": den_hist}
    card[TRAINING_CONDITION] = condition = trained_condition(cfg)
    # A short provenance stamp inside each checkpoint; the full card lives beside them.
    stamp = {
        "card": {k: card[k] for k in ("format", "seed", "steps", "threads", "versions")},
        TRAINING_CONDITION: condition,
    }
    sr_path = save_checkpoint(out_dir / "default_sr.pth", sr, "sr", extra=stamp)
    den_path = save_checkpoint(out_dir / "default_den.pth", den, "den", extra=stamp)
    card["files"] = {p.name: _file_info(p) for p in (sr_path, den_path)}
    (out_dir / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    (out_dir / "MODEL_CARD.md").write_text(render_card(card))
    return card


# -- data ----------------------------------------------------------------------------------


def stack_seed(seed: int, k: int) -> int:
    """Simulator seed of training field k for training seed ``seed``."""
    return seed * 10_000 + k


def sr_target(sim: SimResult, peak: float) -> np.ndarray:
    """SR target on the 4x grid: gt / peak (structure only), so RSF(target) = signal / peak."""
    return (sim.gt / peak).astype(np.float32)


def make_training_data(
    cfg: TrainConfig, seed: int, cache: Path, on_stack: Callable[[int], None] | None = None
) -> TrainingData:
    """Simulate the training fields and their normalised inputs/targets; edges come cached."""
    from saft_core.edges import compute_edges

    xs, es, srs, dens = [], [], [], []
    for k in range(cfg.n_stacks):
        cond = cfg.condition_for(stack_seed(seed, k))
        sim = simulate_stack(
            cond, cfg.frames_per_stack, (cfg.lr_size, cfg.lr_size), seed=stack_seed(seed, k)
        )
        peak = lr_scale(sim.lr)
        key = _cache_key(cond, cfg, stack_seed(seed, k), sim.lr)
        path = cache / f"edges-{key}.npy"
        if path.is_file():
            edges = np.load(path)
        else:
            edges = np.asarray(compute_edges(sim.lr), dtype=np.float32)
            cache.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, edges)
            tmp.replace(path)
        xs.append(sim.lr / peak)
        es.append(normalise_edges(edges))
        srs.append(sr_target(sim, peak))
        dens.append(sim.clean / peak)
        if on_stack is not None:
            on_stack(k)
    cat = lambda a: np.ascontiguousarray(np.concatenate(a).astype(np.float32))  # noqa: E731
    return TrainingData(x=cat(xs), e=cat(es), sr_t=cat(srs), den_t=cat(dens))


def _cache_key(cond: SimCondition, cfg: TrainConfig, sim_seed: int, lr: np.ndarray) -> str:
    """Hash of what determines the edge map: the edge code, condition, seed and LR pixels."""
    import inspect

    import saft_core.edges

    h = hashlib.sha256(inspect.getsource(saft_core.edges).encode())
    h.update(json.dumps([asdict(cond), cfg.frames_per_stack, cfg.lr_size, sim_seed]).encode())
    h.update(np.ascontiguousarray(lr).tobytes())
    return h.hexdigest()[:20]


def validation_stack(cfg: TrainConfig, seed: int, index: int = 0) -> SimResult:
    """Held-out stack ``index`` of the training distribution (seeds disjoint from training)."""
    sim_seed = VALIDATION_SEED_BASE + seed + 1000 * index
    return simulate_stack(
        cfg.condition_for(sim_seed), cfg.val_frames, (cfg.val_size, cfg.val_size), seed=sim_seed
    )


def validate(cfg: TrainConfig, seed: int, sr: nn.Module, den: nn.Module) -> dict[str, Any]:
    """Mean held-out metrics over ``cfg.val_stacks`` stacks, and each stack's own figures."""
    from saft_core.edges import compute_edges

    per_stack = []
    for i in range(cfg.val_stacks):
        val = validation_stack(cfg, seed, i)
        per_stack.append(evaluate_models(sr, den, val, compute_edges(val.lr)))
    if len(per_stack) == 1:
        return per_stack[0]
    mean = {
        name: {k: round(float(np.mean([m[name][k] for m in per_stack])), 4) for k in fig}
        for name, fig in per_stack[0].items()
    }
    return {**mean, "per_stack": per_stack}


class _Crops:
    """Random aligned crops with flips / 90-degree rotations, from one seeded generator."""

    def __init__(self, data: TrainingData, crop: int, rng: np.random.Generator) -> None:
        self.data, self.crop, self.rng = data, crop, rng
        self.n, self.h, self.w = data.x.shape

    def _aug(self, arr: np.ndarray, k: int, flip: bool) -> np.ndarray:
        arr = np.rot90(arr, k, axes=(-2, -1))
        return arr[..., ::-1] if flip else arr

    def sr_batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs (B, 2, c, c) [edge, LR], targets (B, 1, 4c, 4c))."""
        c, s, d = self.crop, SCALE, self.data
        inp, tgt = [], []
        for _ in range(size):
            i = int(self.rng.integers(self.n))
            y = int(self.rng.integers(self.h - c + 1))
            x = int(self.rng.integers(self.w - c + 1))
            k, flip = int(self.rng.integers(4)), bool(self.rng.integers(2))
            pair = np.stack([d.e[i, y : y + c, x : x + c], d.x[i, y : y + c, x : x + c]])
            inp.append(self._aug(pair, k, flip))
            tgt.append(
                self._aug(d.sr_t[i, y * s : (y + c) * s, x * s : (x + c) * s], k, flip)[None]
            )
        return torch.from_numpy(np.ascontiguousarray(inp)), torch.from_numpy(
            np.ascontiguousarray(tgt)
        )

    def den_batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(noisy LR (B, 1, c, c), clean LR (B, 1, c, c))."""
        c, d = self.crop, self.data
        inp, tgt = [], []
        for _ in range(size):
            i = int(self.rng.integers(self.n))
            y = int(self.rng.integers(self.h - c + 1))
            x = int(self.rng.integers(self.w - c + 1))
            k, flip = int(self.rng.integers(4)), bool(self.rng.integers(2))
            inp.append(self._aug(d.x[i, y : y + c, x : x + c], k, flip)[None])
            tgt.append(self._aug(d.den_t[i, y : y + c, x : x + c], k, flip)[None])
        return torch.from_numpy(np.ascontiguousarray(inp)), torch.from_numpy(
            np.ascontiguousarray(tgt)
        )


# -- optimisation --------------------------------------------------------------------------


def _schedule(step: int, steps: int, cfg: TrainConfig) -> float:
    """Learning-rate factor: linear warm-up, then cosine decay to final_lr_frac."""
    warm = min(cfg.warmup, max(steps // 10, 1))
    if step < warm:
        return (step + 1) / warm
    t = (step - warm) / max(steps - warm, 1)
    return cfg.final_lr_frac + (1 - cfg.final_lr_frac) * 0.5 * (1 + math.cos(math.pi * t))


def sr_loss(pred: torch.Tensor, target: torch.Tensor, grad_weight: float) -> torch.Tensor:
    """L1 on intensities plus ``grad_weight`` x L1 on finite differences (sharp, thin lines)."""
    loss = (pred - target).abs().mean()
    if grad_weight > 0:
        dx = lambda a: a[..., :, 1:] - a[..., :, :-1]  # noqa: E731
        dy = lambda a: a[..., 1:, :] - a[..., :-1, :]  # noqa: E731
        loss = loss + grad_weight * (
            (dx(pred) - dx(target)).abs().mean() + (dy(pred) - dy(target)).abs().mean()
        )
    return loss


def _train_sr(
    data: TrainingData, cfg: TrainConfig, steps: int, seed: int, tick: Callable[[dict], None]
) -> tuple[nn.Module, list[list[float]]]:
    """The SR network trained on [edge, LR] crops against the 4x structure target."""
    torch.manual_seed(seed)
    model = build_sr(cfg.sr, seed=seed)
    crops = _Crops(data, cfg.crop, np.random.default_rng([seed, 1]))
    batches = partial(crops.sr_batch, cfg.batch)
    loss_fn = partial(sr_loss, grad_weight=cfg.grad_weight)
    return _fit(model, cfg.lr, batches, loss_fn, "sr", steps, cfg, tick)


def _den_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred - target).abs().mean()


def _train_den(
    data: TrainingData, cfg: TrainConfig, steps: int, seed: int, tick: Callable[[dict], None]
) -> tuple[nn.Module, list[list[float]]]:
    """The DEN trained to map noisy normalised LR crops to their noiseless version (L1)."""
    torch.manual_seed(seed + 1)
    model = build_den(cfg.den, seed=seed + 1)
    crops = _Crops(data, cfg.crop, np.random.default_rng([seed, 2]))
    batches = partial(crops.den_batch, cfg.den_batch)
    return _fit(model, cfg.den_lr, batches, _den_loss, "den", steps, cfg, tick)


def _fit(
    model: nn.Module,
    base_lr: float,
    batch_fn: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    phase: str,
    steps: int,
    cfg: TrainConfig,
    tick: Callable[[dict], None],
) -> tuple[nn.Module, list[list[float]]]:
    """Plain supervised loop (Adam); returns the model in eval mode and
    [[step, mean loss since the last entry], ...]."""
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=base_lr, betas=(0.9, 0.99))
    every = max(steps // LOG_POINTS, 1)
    history: list[list[float]] = []
    acc, n = 0.0, 0
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = base_lr * _schedule(step, steps, cfg)
        inp, tgt = batch_fn()
        loss = loss_fn(model(inp), tgt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        acc, n = acc + float(loss.detach()), n + 1
        if (step + 1) % every == 0 or step + 1 == steps:
            history.append([step + 1, acc / n])
            acc, n = 0.0, 0
        tick({"phase": phase, "step": step + 1, "loss": float(loss.detach())})
    return model.eval(), history


# -- evaluation ----------------------------------------------------------------------------


@torch.no_grad()
def super_resolve(sr: nn.Module, lr: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """|SR(x)| of a stack on the 4x grid in normalised units (whole frames, no tiling)."""
    x = lr / lr_scale(lr)
    e = normalise_edges(edges)
    out = []
    for t in range(lr.shape[0]):
        inp = torch.from_numpy(np.stack([e[t], x[t]])[None].astype(np.float32))
        out.append(sr.eval()(inp).abs()[0, 0].numpy())
    return np.stack(out)


@torch.no_grad()
def denoise(den: nn.Module, lr: np.ndarray) -> np.ndarray:
    """|DEN(x)| of a stack, normalised units (LR peak = 1)."""
    x = torch.from_numpy((lr / lr_scale(lr)).astype(np.float32))[:, None]
    return den.eval()(x).abs()[:, 0].numpy()


def bicubic(lr: np.ndarray) -> np.ndarray:
    """Bicubic 4x upsampling of the normalised LR stack (the baseline to beat)."""
    x = torch.from_numpy((lr / lr_scale(lr)).astype(np.float32))[:, None]
    return F.interpolate(x, scale_factor=SCALE, mode="bicubic", align_corners=False)[:, 0].numpy()


def evaluate_models(
    sr: nn.Module | None, den: nn.Module | None, sim: SimResult, edges: np.ndarray
) -> dict[str, Any]:
    """Per-frame means: SR and bicubic vs GT (after gain+offset fit); DEN and raw LR vs clean."""
    out: dict[str, Any] = {}
    if sr is not None:
        out["sr"] = _rounded(quality_vs_gt(super_resolve(sr, sim.lr, edges), sim.gt))
        out["bicubic"] = _rounded(quality_vs_gt(bicubic(sim.lr), sim.gt))
    if den is not None:
        peak = lr_scale(sim.lr)
        clean = sim.clean / peak
        # No fit here: the DEN works in the LR's own normalised units.
        for name, stack in (("den", denoise(den, sim.lr)), ("noisy", sim.lr / peak)):
            value = np.mean([psnr(a, c) for a, c in zip(stack, clean, strict=True)])
            out[name] = {"psnr": round(float(value), 4)}
    return out


def _rounded(metrics: dict[str, float]) -> dict[str, float]:
    return {k: round(float(v), 4) for k, v in metrics.items()}


# -- model card ----------------------------------------------------------------------------


def _file_info(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def trained_condition(cfg: TrainConfig) -> dict[str, Any]:
    """The checkpoint's ``training_condition``: the PSF width(s) in LR px it was trained at,
    at the simulator's nominal 100 nm camera pixel."""
    if cfg.condition != BROAD:
        return training_condition(cfg.condition_obj().psf_sigma_lr, NOMINAL_PIXEL_UM)
    from saft_core.simulate import BROAD_RANGES

    low, high = BROAD_RANGES["psf_sigma_lr"]
    return training_condition(math.sqrt(low * high), NOMINAL_PIXEL_UM, (low, high))


def _condition_description(cfg: TrainConfig) -> dict[str, Any]:
    """The training condition for the card: one preset's fields, or the BROAD ranges."""
    if cfg.condition != BROAD:
        return asdict(cfg.condition_obj())
    from saft_core.simulate import BROAD_DEFOCUS_FRACTION, BROAD_RANGES, STRUCTURES

    return {
        "distribution": "saft_core.simulate.sample_condition",
        "structure": f"random non-empty subset of {'+'.join(STRUCTURES)}",
        **{k: list(v) for k, v in BROAD_RANGES.items()},
        "defocus_fraction": BROAD_DEFOCUS_FRACTION,
    }


def _card(cfg, seed, steps, den_steps, threads, seconds, sr, den, metrics) -> dict[str, Any]:
    import nanopyx
    import scipy

    return {
        "format": CARD_FORMAT,
        "created_by": "saft_core.pretraining.train_base",
        "seed": seed,
        "threads": threads,
        "versions": {
            "torch": str(torch.__version__),
            "numpy": str(np.__version__),
            "scipy": str(scipy.__version__),
            "nanopyx": str(getattr(nanopyx, "__version__", "?")),
            "python": platform.python_version(),
        },
        "data": {
            "simulator": "saft_core.simulate.simulate_stack",
            "condition_name": cfg.condition.upper(),
            "condition": _condition_description(cfg),
            "n_stacks": cfg.n_stacks,
            "frames_per_stack": cfg.frames_per_stack,
            "lr_shape": [cfg.lr_size, cfg.lr_size],
            "stack_seeds": f"seed * 10000 + k, k = 0..{cfg.n_stacks - 1}",
            "edges": "saft_core.edges.compute_edges of the noisy LR stack, / 255",
            "normalisation": {
                "lr": "LR / max(LR stack)",
                "sr_target": "gt / max(LR stack) on the 4x grid (structure only: no background "
                "or offset; its RSF equals the DEN target up to a gain + offset)",
                "den_target": "noiseless LR (expected counts incl. background and offset) "
                "/ max(LR stack)",
            },
        },
        "steps": {"sr": steps, "den": den_steps},
        "seconds": seconds,
        "sr": {
            "architecture": "RRDBNet (ESRGAN / SFSRM)",
            "config": asdict(cfg.sr),
            "parameters": count_parameters(sr),
            "loss": f"L1 + {cfg.grad_weight} x L1 of finite-difference gradients",
            "optimizer": f"Adam(lr={cfg.lr}, betas=(0.9, 0.99)), warm-up {cfg.warmup}, cosine "
            f"to {cfg.final_lr_frac} x lr, grad-norm clip 1.0",
            "batch": f"{cfg.batch} random {cfg.crop}x{cfg.crop} LR crops, flips + rot90",
        },
        "den": {
            "architecture": "UNetDEN (residual U-Net)",
            "config": asdict(cfg.den),
            "parameters": count_parameters(den),
            "loss": "L1(DEN(noisy LR), noiseless LR)",
            "optimizer": f"Adam(lr={cfg.den_lr}, betas=(0.9, 0.99)), same schedule",
            "batch": f"{cfg.den_batch} random {cfg.crop}x{cfg.crop} LR crops, flips + rot90",
        },
        "validation": {
            "stack": {
                "condition_name": cfg.condition.upper(),
                "seed": VALIDATION_SEED_BASE + seed,
                "stacks": cfg.val_stacks,
                "seeds": f"{VALIDATION_SEED_BASE + seed} + 1000 * i, i < {cfg.val_stacks}",
                "frames": cfg.val_frames,
                "lr_shape": [cfg.val_size, cfg.val_size],
            },
            "method": "per-frame means; SR and bicubic (of LR / max) are each mapped onto GT by "
            "a least-squares gain + offset before PSNR / SSIM / NRMSE (data range = GT "
            "max - min); DEN and the raw noisy LR are compared with the noiseless LR "
            "(all / max(LR stack), no fit)",
            **metrics,
        },
    }


def render_card(card: dict[str, Any]) -> str:
    """The Markdown model card (same figures as card.json)."""
    v, d, s = card["validation"], card["data"], card["seconds"]
    cond = ", ".join(f"{k}={val}" for k, val in d["condition"].items())
    lines = [
        "# Default SAFT networks: model card",
        "",
        "Trained by `saft_core.pretraining.train_base` (`saft train-base`) on simulated data only.",
        "Machine-readable copy: `card.json`.",
        "",
        "## Data",
        f"- Simulator `{d['simulator']}`, condition **{d['condition_name']}**: {cond}.",
        f"- {d['n_stacks']} fields of {d['frames_per_stack']} frames, "
        f"{d['lr_shape'][0]}x{d['lr_shape'][1]} LR pixels; seeds {d['stack_seeds']} "
        f"(training seed {card['seed']}).",
        f"- Edges: {d['edges']}.",
        *(f"- {k}: {val}" for k, val in d["normalisation"].items()),
        "",
        "## Networks",
    ]
    for kind in ("sr", "den"):
        m = card[kind]
        lines += [
            f"- **{kind.upper()}**: {m['architecture']} {m['config']}, {m['parameters']:,} "
            "parameters.",
            f"  Loss {m['loss']}; {m['optimizer']}; {m['batch']}; {card['steps'][kind]} steps.",
        ]
    lines += [
        "",
        "## Run",
        f"- Seconds: data {s['data']}, SR {s['sr']}, DEN {s['den']}, evaluation {s['eval']}, "
        f"total {s['total']} (process CPU time {s['cpu_total']}), with {card['threads']} "
        "torch thread(s).",
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in card["versions"].items()) + ".",
        "",
        "## Validation (held-out stacks)",
        f"{v['stack'].get('stacks', 1)} stack(s) of {v['stack']['frames']} frames of "
        f"{v['stack']['lr_shape'][0]}x{v['stack']['lr_shape'][1]} LR pixels, condition "
        f"{v['stack']['condition_name']} (each stack draws its own), seeds "
        f"{v['stack'].get('seeds', v['stack']['seed'])}; the table gives the mean. "
        f"Method: {v['method']}.",
        "",
        "| output | PSNR (dB) | SSIM | NRMSE |",
        "| --- | --- | --- | --- |",
    ]
    for name in ("sr", "bicubic"):
        if name in v:
            r = v[name]
            lines.append(f"| {name} vs GT | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['nrmse']:.4f} |")
    for name in ("den", "noisy"):
        if name in v:
            lines.append(f"| {name} vs noiseless LR | {v[name]['psnr']:.2f} | | |")
    per_stack = v.get("per_stack", [])
    if per_stack:
        gains = [m["sr"]["psnr"] - m["bicubic"]["psnr"] for m in per_stack]
        lines += [
            "",
            "SR minus bicubic PSNR per held-out stack (dB): "
            + ", ".join(f"{g:+.2f}" for g in gains)
            + f" (mean {sum(gains) / len(gains):+.2f}).",
        ]
    lines += [
        "",
        "## Intended use and limits",
        "- Starting point for SAFT fine-tuning: the networks have seen the condition(s) above "
        "(BROAD: PSF widths, SNR, background, out-of-focus light and structures drawn per "
        "field), so they generalise instead of painting one condition's structures onto "
        "everything; SAFT adapts them further to a user's own stack. They are small (CPU) "
        "networks, not a substitute for the published SFSRM weights where those fit the data.",
        "- SR output is structure only (no background or camera offset), in LR-normalised "
        "units; reconstruction multiplies it by the LR stack's max.",
        "",
        "## Reproduce",
        f"`python bench/train_default.py --steps {card['steps']['sr']} --seed {card['seed']} "
        f"--threads {card['threads']} --condition {d['condition_name'].lower()} --stacks "
        f"{d['n_stacks']} --val-stacks {v['stack'].get('stacks', 1)}` (or `saft train-base`). "
        "With 1 thread the weights are bit-identical between runs on the same software "
        "versions.",
    ]
    if "files" in card:
        lines += ["", "## Files"]
        lines += [
            f"- `{n}`: {f['bytes']:,} bytes, sha256 `{f['sha256']}`"
            for n, f in card["files"].items()
        ]
    return "\n".join(lines) + "\n"
