"""Training throughput of our pipeline vs a plain torchvision loop, on the same PNGs.

    python benchmarks/train_throughput.py            # full run (about 20 min on an idle 2-core VM)
    python benchmarks/train_throughput.py --quick    # smoke run (a few images, 1 epoch)

Ours: decode-once uint8 cache (built once, timed apart as ``ours_cache_s``), ``make_loader``,
``BatchTransform(augment="light")`` on whole batches, ``train_one_epoch`` with bf16 autocast and
channels_last. Reference: ``ImageFolder`` + PIL decode and per-sample torchvision transforms every
epoch, fp32, ``loss.item()`` every step. Both: same model and initial weights, AdamW, per-step
cosine LR, label smoothing, batch size, epochs. img/s includes data loading (median over epochs;
the loops alternate epoch by epoch, swapping who goes first). Accuracy: both models through
``predict_logits`` (fp32) on the cached val split.

The hardware limit is measured too: ``*_compute_img_s`` times the bare model step (forward,
backward, AdamW) on a ready-made batch, bf16 + channels_last for ours and fp32 for the
reference, so ``compute_ratio`` is the most any data path could gain with that precision and
``ours_of_compute`` is how close our whole epoch gets to it.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

from medclass.config import SyntheticParams
from medclass.data import synthetic
from medclass.data.cache import build_cache, load_cached_split
from medclass.data.dataset import BatchTransform, CachedDataset, make_loader
from medclass.data.split import ManifestRow
from medclass.models import create_model
from medclass.train.engine import StepConfig, place_model, predict_logits, train_one_epoch
from medclass.train.losses import build_criterion
from medclass.train.optim import build_optimizer, build_scheduler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NPZ = ROOT.parent / "shared" / "data" / "pneumoniamnist.npz"
CPU = torch.device("cpu")
LR, WEIGHT_DECAY, LABEL_SMOOTHING, DROP_RATE, WARMUP_STEPS = 2e-3, 0.05, 0.1, 0.1, 3

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def load_source(n_train: int, n_val: int, seed: int) -> tuple[Arrays, list[str], str]:
    """(train_x, train_y, val_x, val_y) 28 px uint8, class names, dataset description."""
    rng = np.random.default_rng(seed)
    if NPZ.is_file():
        d = np.load(NPZ)
        ti = rng.permutation(len(d["train_images"]))[:n_train]
        vi = rng.permutation(len(d["val_images"]))[:n_val]
        arrays = (d["train_images"][ti], d["train_labels"].ravel()[ti].astype(np.int64),
                  d["val_images"][vi], d["val_labels"].ravel()[vi].astype(np.int64))
        return arrays, ["0_normal", "1_pneumonia"], f"pneumoniamnist ({NPZ.name}, 28 px)"
    params = SyntheticParams(images_per_class=-(-(n_train + n_val) // 4), size=28)
    items = list(synthetic.generate(params, seed))
    x = np.stack([img for _, _, img in items])
    y = np.array([params.classes.index(name) for name, _, _ in items], dtype=np.int64)
    order = rng.permutation(len(x))
    tr, va = order[n_val : n_val + n_train], order[:n_val]
    names = [f"{i}_{c}" for i, c in enumerate(params.classes)]  # ImageFolder sorts class dirs
    return (x[tr], y[tr], x[va], y[va]), names, f"synthetic ({NPZ} absent; 28 px)"


def write_tree(root: Path, arrays: Arrays, classes: list[str], size: int) -> list[ManifestRow]:
    """PNGs under ``root/{train,val}/<class>/`` (upscaled once to ``size``); manifest rows."""
    rows = []
    for split, x, y in (("train", arrays[0], arrays[1]), ("val", arrays[2], arrays[3])):
        for i, (img, label) in enumerate(zip(x, y, strict=True)):
            rel = f"{split}/{classes[label]}/{i:05d}.png"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).resize((size, size), Image.Resampling.BILINEAR).save(root / rel)
            rows.append(ManifestRow(rel, int(label), classes[label], split))
    return rows


def fresh_model(name: str, n_classes: int, seed: int) -> nn.Module:
    """The same architecture and initial weights for both loops."""
    torch.manual_seed(seed)
    return create_model(name, num_classes=n_classes, in_chans=1, drop_rate=DROP_RATE)


class Ours:
    """Our training path: cached split, batch transforms, bf16 + channels_last."""

    def __init__(self, model: nn.Module, cache: Path, stats: dict, batch: int, seed: int,
                 total_epochs: int) -> None:
        images, labels = load_cached_split(cache, "train")
        self.loader = make_loader(CachedDataset(images, labels), batch, shuffle=True, seed=seed)
        self.sampler = self.loader.sampler
        self.transform = BatchTransform(stats["mean"], stats["std"], augment="light")
        self.cfg = StepConfig(CPU, amp_dtype=torch.bfloat16, channels_last=True, progress=False)
        self.model = place_model(model, self.cfg)
        self.criterion = build_criterion(labels, len(stats["classes"]), weights_mode="none",
                                         label_smoothing=LABEL_SMOOTHING)
        self.opt = build_optimizer(self.model, head_lr=LR, backbone_lr=LR,
                                   weight_decay=WEIGHT_DECAY)
        self.sched = build_scheduler(self.opt, "cosine", epochs=total_epochs,
                                     steps_per_epoch=len(self.loader))
        self.seed, self.n = seed, len(labels)

    def epoch(self, e: int) -> float:
        """One epoch (wall seconds returned; mean train loss kept in ``last_loss``)."""
        self.sampler.set_epoch(e)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + e)
        t0 = time.perf_counter()
        self.last_loss = train_one_epoch(self.model, self.loader, self.transform, self.criterion,
                                         self.opt, self.sched, self.cfg, generator=gen)["loss"]
        return time.perf_counter() - t0


class Reference:
    """A plain loop: ImageFolder + PIL decode + per-sample transforms each epoch, fp32."""

    def __init__(self, model: nn.Module, folder: Path, stats: dict, batch: int, workers: int,
                 total_epochs: int) -> None:
        tf = transforms.Compose([
            transforms.Grayscale(1),
            transforms.RandomAffine(degrees=10, translate=(0.06, 0.06), scale=(0.9, 1.1)),
            transforms.ColorJitter(brightness=0.1, contrast=0.1),
            transforms.ToTensor(),
            transforms.Normalize(stats["mean"], stats["std"]),
        ])
        ds = datasets.ImageFolder(str(folder), transform=tf)
        if ds.classes != stats["classes"]:
            raise RuntimeError(f"ImageFolder classes {ds.classes} != {stats['classes']}")
        self.loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers)
        self.model, self.n = model, len(ds)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=LABEL_SMOOTHING)
        self.opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
        steps = max(1, total_epochs * len(self.loader))  # per-step cosine to 0, as ours
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=steps)

    def epoch(self, e: int) -> float:
        """One epoch (wall seconds returned; mean train loss kept in ``last_loss``)."""
        self.model.train()
        t0, total = time.perf_counter(), 0.0
        for x, y in self.loader:
            self.opt.zero_grad()
            loss = self.criterion(self.model(x), y)
            loss.backward()
            self.opt.step()
            self.sched.step()
            total += loss.item()
        self.last_loss = total / max(len(self.loader), 1)
        return time.perf_counter() - t0


def compute_rate(name: str, n_classes: int, size: int, batch: int, seed: int, bf16: bool,
                 steps: int = 3) -> float:
    """img/s of bare training steps (no data path) after one warm-up step."""
    model = fresh_model(name, n_classes, seed).train()
    cfg = StepConfig(CPU, amp_dtype=torch.bfloat16 if bf16 else None, channels_last=bf16)
    model = place_model(model, cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 1, size, size, generator=gen)
    x = x.contiguous(memory_format=torch.channels_last) if bf16 else x
    y = torch.randint(0, n_classes, (batch,), generator=gen)
    crit = nn.CrossEntropyLoss(label_smoothing=LABEL_SMOOTHING)
    secs = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = crit(model(x).float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        secs.append(time.perf_counter() - t0)
    return batch / statistics.median(secs[1:])


def warm_up(runner: Ours | Reference, images: int, batch: int) -> None:
    """Train a throwaway deep copy on ``images`` images (oneDNN primitives, allocator)."""
    clone = copy.deepcopy(runner)
    ds, k = runner.loader.dataset, min(images, runner.n)
    if isinstance(runner, Ours):
        clone.loader = make_loader(CachedDataset(ds.images[:k], ds.labels[:k]), min(batch, k),
                                   shuffle=True)
        clone.sampler = clone.loader.sampler
    else:
        clone.loader = DataLoader(Subset(ds, range(k)), batch_size=min(batch, k), shuffle=True)
    with warnings.catch_warnings():  # the deep-copied scheduler loses its step() hook
        warnings.simplefilter("ignore", UserWarning)
        clone.epoch(0)


def val_accuracy(model: nn.Module, cache: Path, stats: dict) -> float:
    """Top-1 accuracy on the cached val split, fp32 NCHW, same path for both models."""
    images, labels = load_cached_split(cache, "val")
    loader = make_loader(CachedDataset(images, labels), 256, shuffle=False)
    model = model.to(memory_format=torch.contiguous_format)
    cfg = StepConfig(CPU, progress=False)
    logits, y = predict_logits(model, loader, BatchTransform(stats["mean"], stats["std"]), cfg)
    return float((logits.argmax(1) == y).mean())


def run_size(size: int, args: argparse.Namespace, arrays: Arrays, classes: list[str],
             tmp: Path) -> list[dict[str, Any]]:
    """Write the PNG tree at ``size``, build our cache, then benchmark every model."""
    tree = tmp / f"png{size}"
    rows_m = write_tree(tree, arrays, classes, size)
    t0 = time.perf_counter()
    stats = build_cache(tree, rows_m, size, "auto", classes, tmp / f"cache{size}")
    cache_s = time.perf_counter() - t0
    epochs = max(args.epochs, args.acc_epochs[size])
    out = []
    for name in args.models_large if size >= 128 else args.models_small:
        ours = Ours(fresh_model(name, len(classes), args.seed), tmp / f"cache{size}", stats,
                    args.batch_size, args.seed, epochs)
        ref = Reference(fresh_model(name, len(classes), args.seed), tree / "train", stats,
                        args.batch_size, args.workers, epochs)
        # a few full steps at small sizes; at large ones an epoch takes minutes, so 8 images
        warm = WARMUP_STEPS * args.batch_size if size < 128 else 8
        for runner in (ours, ref):
            warm_up(runner, warm, args.batch_size)
        secs: dict[str, list[float]] = {"ours": [], "reference": []}
        load = []  # 1-min load average after each epoch pair: how busy the machine was
        for e in range(epochs):
            order = [("ours", ours), ("reference", ref)][:: 1 if e % 2 == 0 else -1]
            for key, runner in order:
                secs[key].append(runner.epoch(e))
                print(f"  {name} {size}px epoch {e} {key}: {secs[key][-1]:.2f} s", flush=True)
            load.append(round(os.getloadavg()[0], 2))
        ours_ips = ours.n / statistics.median(secs["ours"])
        ref_ips = ref.n / statistics.median(secs["reference"])
        out.append({
            "model": name, "image_size": size, "epochs": epochs,
            "ours_img_s": round(ours_ips, 2), "reference_img_s": round(ref_ips, 2),
            "ratio": round(ours_ips / ref_ips, 2),
            **{f"{k}_epoch_s": [round(s, 3) for s in v] for k, v in secs.items()},
            "ours_val_acc": round(val_accuracy(ours.model, tmp / f"cache{size}", stats), 4),
            "reference_val_acc": round(val_accuracy(ref.model, tmp / f"cache{size}", stats), 4),
            "ours_precision": "bf16+channels_last", "reference_precision": "fp32",
            "ours_cache_s": round(cache_s, 2), "ours_last_train_loss": round(ours.last_loss, 4),
            "reference_last_train_loss": round(ref.last_loss, 4), "loadavg_per_epoch": load,
        })
        for key, bf16 in (("ours", True), ("reference", False)):
            batch = min(args.batch_size, ours.n)
            out[-1][f"{key}_compute_img_s"] = round(
                compute_rate(name, len(classes), size, batch, args.seed, bf16), 2)
        out[-1]["compute_ratio"] = round(
            out[-1]["ours_compute_img_s"] / out[-1]["reference_compute_img_s"], 2)
        out[-1]["ours_of_compute"] = round(ours_ips / out[-1]["ours_compute_img_s"], 2)
        print(f"  -> {out[-1]}", flush=True)
    return out


def markdown(rows: list[dict[str, Any]]) -> str:
    """The results table (img/s are medians over epochs; ratio = ours / reference)."""
    cols = ("model", "image_size", "epochs", "ours_img_s", "reference_img_s", "ratio",
            "compute_ratio", "ours_of_compute", "ours_val_acc", "reference_val_acc",
            "ours_cache_s")
    lines = ["| " + " | ".join(cols) + " |", "|---" * len(cols) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows])


def parse_args() -> argparse.Namespace:
    fmt = argparse.RawDescriptionHelpFormatter
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    ap.add_argument("--models-small", nargs="+", default=["resnet18_cifar", "small_resnet"],
                    help="models run at sizes < 128 px")
    ap.add_argument("--models-large", nargs="+", default=["timm/resnet18", "small_resnet"],
                    help="models run at sizes >= 128 px")
    ap.add_argument("--sizes", nargs="+", type=int, default=[28, 224])
    ap.add_argument("--train-images", type=int, default=1024, help="train images, 28 px")
    ap.add_argument("--train-images-224", type=int, default=256, help="train images, 224 px")
    ap.add_argument("--val-images", type=int, default=512, help="val images, 28 px")
    ap.add_argument("--val-images-224", type=int, default=128, help="val images, 224 px")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=1, help="timed epochs (at least)")
    ap.add_argument("--accuracy-epochs", type=int, default=3, help="epochs at 28 px")
    ap.add_argument("--accuracy-epochs-224", type=int, default=1, help="epochs at 224 px")
    ap.add_argument("--workers", type=int, default=0, help="reference DataLoader workers")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="smoke run: few images, 1 epoch")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/train_throughput.json")
    args = ap.parse_args()
    if args.quick:
        args.train_images, args.train_images_224 = 256, 16
        args.val_images, args.val_images_224 = 64, 16
        args.batch_size, args.epochs, args.accuracy_epochs, args.accuracy_epochs_224 = 32, 1, 1, 1
    args.acc_epochs = {s: args.accuracy_epochs_224 if s >= 224 else args.accuracy_epochs
                       for s in args.sizes}
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    rows, datasets_used = [], {}
    with tempfile.TemporaryDirectory(prefix="train_throughput_") as tmp:
        for size in args.sizes:
            big = size >= 224
            n_train = args.train_images_224 if big else args.train_images
            arrays, classes, dataset = load_source(
                n_train, args.val_images_224 if big else args.val_images, args.seed)
            majority = round(float(np.bincount(arrays[3]).max() / len(arrays[3])), 4)
            datasets_used[size] = {"dataset": dataset, "png_px": size, "train_images": n_train,
                                   "val_images": len(arrays[3]), "val_majority_acc": majority}
            print(f"{size} px: {datasets_used[size]}", flush=True)
            rows += run_size(size, args, arrays, classes, Path(tmp))
    settings = {
        "batch_size": args.batch_size, "timed_epochs_min": args.epochs,
        "epochs_by_size": args.acc_epochs, "warmup": f"{WARMUP_STEPS} steps (<128 px) or 8 images",
        "lr": LR, "weight_decay": WEIGHT_DECAY, "label_smoothing": LABEL_SMOOTHING,
        "drop_rate": DROP_RATE, "ours": "decode-once cache + BatchTransform(light) + "
        "train_one_epoch, bf16 autocast, channels_last, per-step cosine LR, no grad clip",
        "reference": "ImageFolder + PIL + per-sample torchvision transforms, fp32, "
        f"num_workers={args.workers}, loss.item() per step, per-step cosine LR",
        "threads": torch.get_num_threads(), "data": datasets_used, "quick": args.quick,
        "wall_s": round(time.perf_counter() - t_start, 1),
        "command": "python benchmarks/train_throughput.py " + " ".join(sys.argv[1:]),
    }
    write_results(args.out, {"machine": describe(), "settings": settings, "rows": rows})
    print(markdown(rows))
    print(f"wall {settings['wall_s']} s -> {args.out}")


if __name__ == "__main__":
    main()
