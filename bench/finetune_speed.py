"""Fine-tuning speed and memory on the issue's reference workload.

50 simulated frames of 128x128 LR pixels (a shifted condition), the shipped default models,
5 iterations, on the CPU with the given threads. Prints seconds per phase and peak RSS.

    python bench/finetune_speed.py --threads 2 [--preset adaptive] [--windows-per-tile 1]
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from saft_core import simulate
from saft_core.edges import compute_edges
from saft_core.finetune import finetune
from saft_core.params import SaftParams


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--windows-per-tile", type=int, default=None, help="default: the preset's")
    ap.add_argument("--preset", default="reference", choices=["reference", "adaptive"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sim = simulate.simulate_stack(simulate.WIDE_PSF, args.frames, (args.size, args.size), seed=5)
    t0 = time.perf_counter()
    edges = compute_edges(sim.lr)
    t_edges = time.perf_counter() - t0
    overrides = {"iterations": args.iterations}
    if args.windows_per_tile is not None:
        overrides["windows_per_tile"] = args.windows_per_tile
    params = SaftParams.preset(args.preset, **overrides)
    seen = []
    t0 = time.perf_counter()
    summary = finetune(
        sim.lr,
        edges,
        params,
        on_iteration=lambda r: seen.append((r.iteration, round(r.seconds, 1), r.rse, r.rsp)),
    )
    t_ft = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"stack {args.frames}x{args.size}x{args.size}, threads {args.threads}, "
        f"preset {args.preset}, tile {params.tile}, windows/tile {params.windows_per_tile}, "
        f"device {summary.device}"
    )
    print(
        f"edges (SRRF): {t_edges:.1f} s; fine-tuning {args.iterations} iterations: "
        f"{t_ft:.1f} s (incl. frozen outputs, previews, metrics); peak RSS {rss:.0f} MiB"
    )
    for k, seconds, rse, rsp in seen:
        print(f"  iteration {k}: {seconds} s, rse {rse}, rsp {rsp}")


if __name__ == "__main__":
    main()
