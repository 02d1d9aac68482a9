"""Measure how fast this machine trains and scores the params' model (for ``medclass.plan``).

Started like a stage, ``python -m medclass.launch medclass.plan_probe``, so ``repro`` pins and
thread counts are those of the real run. It trains epochs of the finetune phase exactly
as ``fit`` does (model, augmentation, precision, EMA, loss) on a seeded sample of the training
split, in a temporary folder: one to warm allocators and kernels up, then timed ones until they
add up to ``MIN_TIMED_S`` of training (at most ``MAX_EPOCHS``); it writes the sizes
and rates as JSON to the file named by ``MEDCLASS_PROBE_OUT``.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

from medclass import repro
from medclass.config import Params, load_params
from medclass.data.bundle import DataBundle, load_data
from medclass.data.dataset import CachedDataset
from medclass.errors import MedclassError
from medclass.io import write_json
from medclass.paths import SPLIT_DIR
from medclass.train.context import build_model, seed_everything
from medclass.train.loop import Outputs, probe_epochs
from medclass.train.phases import finetune_phase

PROBE_BATCHES = 16  # training batches per probe epoch (fewer when the split is smaller)
MIN_TIMED_S = 4.0  # seconds of timed training: one short epoch alone varied by 30 %
MAX_EPOCHS = 20
OUT_ENV = "MEDCLASS_PROBE_OUT"


def _sample(ds: CachedDataset, n: int, seed: int) -> CachedDataset:
    """``n`` rows of ``ds`` drawn with ``seed`` (loaded into memory)."""
    idx = np.sort(np.random.default_rng(seed).choice(len(ds), size=min(n, len(ds)),
                                                     replace=False))
    return CachedDataset(np.asarray(ds.images[idx]), ds.labels[idx])


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure(params: Params, split_dir: Path) -> dict[str, object]:
    """Split sizes and measured train/eval images per second of ``params`` on this machine."""
    if not (split_dir / "stats.json").is_file():
        raise MedclassError(f"{split_dir}/stats.json not found: run `dvc repro split` first "
                            "(the plan needs the dataset's size)")
    data = load_data(split_dir, ("train", "val", "test"))
    train, val = data.splits["train"], data.splits["val"]
    bs = params.train.batch_size
    if len(train) < bs:
        raise MedclassError(f"{len(train)} training images < train.batch_size {bs}; "
                            "lower train.batch_size")
    n_fit = min(len(train), PROBE_BATCHES * bs)
    sample = DataBundle(data.classes, data.stats, {
        "train": _sample(train, n_fit, params.seed),
        "val": _sample(val, min(len(val), 4 * params.train.eval_batch_size), params.seed)})
    seed_everything(params.seed, params.train.deterministic)
    model = build_model(params, len(data.classes), data.in_chans)
    phase = finetune_phase(params, epochs=MAX_EPOCHS, patience=MAX_EPOCHS)
    with tempfile.TemporaryDirectory(prefix="medclass_probe_") as tmp:
        outs = Outputs(Path(tmp) / "best.pt", Path(tmp) / "last.pt", Path(tmp) / "live")
        timed = probe_epochs(model, phase, sample, params.train, seed=params.seed,
                             outputs=outs, min_train_s=MIN_TIMED_S)[1:]
    trained = (n_fit // bs) * bs * len(timed)  # drop_last
    scored = len(sample.splits["val"]) * len(timed)
    return {"n_train": len(train), "n_val": len(val), "n_test": len(data.splits["test"]),
            "train_img_s": trained / sum(t for t, _ in timed),
            "eval_img_s": scored / sum(v for _, v in timed), "machine": cpu_name()}


def main() -> None:
    """Measure with params.yaml's settings (pinned as the stages are); one-line errors."""
    logging.basicConfig(level=logging.INFO, format="[plan] %(message)s", stream=sys.stderr)
    try:
        out = os.environ.get(OUT_ENV)
        if not out:
            raise MedclassError(f"{OUT_ENV} is not set; run `medclass recipe plan`")
        params = load_params()
        repro.apply(params.repro.mode, params.repro.threads)
        write_json(Path(out), measure(params, SPLIT_DIR))
    except MedclassError as exc:
        print(f"error [plan]: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
