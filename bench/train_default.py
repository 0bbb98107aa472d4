"""Train and ship the default networks: saft_core/weights/default_{sr,den}.pth + model card.

    nice -n 10 python bench/train_default.py --threads 1    # the shipped run: BROAD, 3000 steps

The edge-map cache goes to a temporary directory, so only the shipped files land in weights/.
``--condition wide_psf --out DIR`` trains the same recipe on a shifted simulator condition:
the "ceiling" rows of docs/science.md (what a network made for that condition reaches).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from saft_core.networks import WEIGHTS_DIR
from saft_core.pretraining import BROAD, SHIPPED_STEPS, TrainConfig, train_base
from saft_core.simulate import PRESETS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=SHIPPED_STEPS, help="SR steps (DEN: half)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    ap.add_argument("--condition", default=BROAD, choices=[BROAD, *PRESETS])
    ap.add_argument("--stacks", type=int, default=TrainConfig.n_stacks, help="training fields")
    ap.add_argument("--val-stacks", type=int, default=TrainConfig.val_stacks, help="held out")
    args = ap.parse_args()
    started = time.perf_counter()

    def progress(done: int, total: int, info: dict) -> None:
        if done % 50 == 0 or done == total:
            elapsed = time.perf_counter() - started
            print(f"{done}/{total} {info} {elapsed:.0f}s", flush=True)

    with tempfile.TemporaryDirectory(prefix="saft-train-cache-") as cache:
        card = train_base(
            args.out,
            steps=args.steps,
            seed=args.seed,
            threads=args.threads,
            progress=progress,
            cache_dir=Path(cache),
            config=TrainConfig(
                condition=args.condition, n_stacks=args.stacks, val_stacks=args.val_stacks
            ),
        )
    v = card["validation"]
    print("seconds", card["seconds"])
    for name in ("sr", "bicubic", "den", "noisy"):
        print(name, v[name])
    sys.exit(0)


if __name__ == "__main__":
    main()
