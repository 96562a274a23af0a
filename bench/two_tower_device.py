"""Two-tower training throughput on CPU and on a GPU, from one exported training set.

``export`` builds the feed (or search) retrieval training set here, with the functions the
assets use (``bench/train_models.py``), and writes it with its catalog and column roles to a
folder; ``train`` needs only torch, numpy and pandas, so it also runs on an accelerator machine
without the rest of the stack, and times ``train_two_tower`` on each device given.

    python bench/two_tower_device.py export --scale 10 --out .bench-data/feed10
    python bench/two_tower_device.py train --data .bench-data/feed10 --device cpu --device cuda
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

# Run as `python bench/<script>.py`, Python puts bench/ first on the path, not the repository:
# put the root first, for the project's packages and for bench.* and tests.* (not installed).
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SPLIT = "split"


def export(args: argparse.Namespace) -> None:
    from assets.models.retrieval import _tower_features
    from assets.training.model_views import label_columns
    from bench.train_models import scaled_spec, training_sets
    from configs import CONFIG_DIR
    from configs.schema import load_specs
    from runtime.funnel_roles import retrieval_keys

    (spec,) = load_specs([CONFIG_DIR / f"{args.use_case}.yaml"])
    spec = scaled_spec(spec, args.scale, None)
    model = args.model
    user_key, item_key, item_entity = retrieval_keys(spec, model)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for _, frame, items in training_sets(spec, {model}):
        user, item = _tower_features(spec, model, item_entity, frame)
        label = next(iter(label_columns(spec, model).values()))
        keep = [user_key, item_key, label, SPLIT, *user, *item]
        frame[list(dict.fromkeys(keep))].to_parquet(out / "training_set.parquet")
        (items if items is not None else frame[[item_key]].drop_duplicates()).to_parquet(
            out / "catalog.parquet"
        )
        meta = {"user_key": user_key, "item_key": item_key, "label": label}
        meta.update({"user_features": user, "item_features": item, "rows": len(frame)})
        (out / "meta.json").write_text(json.dumps(meta, indent=1))
        print(f"wrote {len(frame):,} rows to {out}")


def train(args: argparse.Namespace) -> None:
    import torch

    from assets.models.two_tower import train_two_tower
    from runtime.models.two_tower import TwoTowerConfig

    data = Path(args.data)
    meta = json.loads((data / "meta.json").read_text())
    frame = pd.read_parquet(data / "training_set.parquet")
    items = pd.read_parquet(data / "catalog.parquet")
    parts = {s: frame[frame[SPLIT] == s].reset_index(drop=True) for s in ("train", "validation")}
    print(f"{len(parts['train']):,} training rows; torch {torch.__version__}", flush=True)
    rows = []
    for device in args.device:
        if device.startswith("cuda") and not torch.cuda.is_available():
            print(f"{device}: not available here")
            continue
        config = TwoTowerConfig(
            epochs=args.epochs, batch_size=args.batch_size, device=device, seed=0
        )
        started = time.perf_counter()
        model = train_two_tower(
            parts["train"],
            parts["validation"],
            user_key=meta["user_key"],
            item_key=meta["item_key"],
            label=meta["label"],
            user_features=meta["user_features"],
            item_features=meta["item_features"],
            items=items,
            config=config,
        )
        seconds = time.perf_counter() - started
        best = min(h.get("valid_loss", float("inf")) for h in model.history)
        name = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
        threads = torch.get_num_threads()
        rows.append((device, name, threads, seconds, model.examples_per_second, best))
        print(
            f"{device} ({name}, {threads} CPU threads): {seconds:.1f} s wall,"
            f" {model.examples_per_second:,.0f} examples/s, best valid loss {best:.4f}",
            flush=True,
        )
    if len(rows) > 1:
        base = rows[0][4]
        for device, name, _, _, speed, _ in rows[1:]:
            print(f"{device} ({name}) / {rows[0][0]}: {speed / base:.2f}x examples/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    exporting = sub.add_parser("export")
    exporting.add_argument("--use-case", default="feed")
    exporting.add_argument("--model", default="retrieval")
    exporting.add_argument("--scale", type=float, default=10)
    exporting.add_argument("--out", required=True)
    training = sub.add_parser("train")
    training.add_argument("--data", required=True)
    training.add_argument("--device", action="append", default=[])
    training.add_argument("--epochs", type=int, default=3)
    training.add_argument("--batch-size", type=int, default=1024)
    args = parser.parse_args()
    if args.command == "export":
        export(args)
    else:
        args.device = args.device or ["cpu"]
        train(args)


if __name__ == "__main__":
    main()
