"""Stratified k-fold cross-validation over train+val, and the fold models as a test ensemble.

Each fold is trained with the main stages' procedure (``head_phase`` then ``finetune_phase``
through ``fit``) with ``kfold.head_epochs``/``epochs``/``patience``. The test split is never
part of a fold; it only scores the fold models and their ensembles at the end. Fold ``i``
seeds init, shuffling and augmentation with ``seed + i``; the folds themselves are drawn by
``StratifiedKFold(shuffle=True, random_state=seed)``, or ``StratifiedGroupKFold`` when the
split stage's ``groups.csv`` has groups of several images (duplicates, ``split.group_by``), so
a group never straddles a fold's train and val parts. Normalisation uses the split's train
statistics (``stats.json``) for every fold.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from medclass import repro
from medclass.config import Params
from medclass.data.bundle import DataBundle, load_data
from medclass.data.dataset import BatchTransform, CachedDataset, make_loader
from medclass.data.groups import GROUPS_FILE, read_groups
from medclass.data.split import read_manifest
from medclass.errors import MedclassError
from medclass.evaluate.ensemble import ensemble_probs, member_variance, mutual_information
from medclass.evaluate.metrics import summary_metrics
from medclass.inference import predict_logits, resolve_device
from medclass.io import load_checkpoint, read_json, write_json
from medclass.models import create_model
from medclass.models.pretrained import Provenance, no_weights, pretrained_provenance
from medclass.models.rebuild import model_from_checkpoint
from medclass.train import distributed
from medclass.train.context import (
    TRAINING_GROUPS,
    build_model,
    check_image_size,
    fingerprint,
    model_meta,
    seed_everything,
)
from medclass.train.distributed import is_main
from medclass.train.engine import StepConfig
from medclass.train.kfold_files import write_curves, write_ensemble_csv
from medclass.train.loop import Outputs, _open_live, fit
from medclass.train.phases import finetune_phase, head_phase, resolve_head_mode

log = logging.getLogger(__name__)

METRIC_KEYS: tuple[str, ...] = ("accuracy", "f1_macro", "auc", "loss")
_FOLD_FILE = re.compile(r"fold_(\d+)(?:_head|_head_last|_last)?\.(?:pt|json)$")


@dataclass(frozen=True)
class KFoldPaths:
    """Where kfold writes: fold checkpoints + done markers, plot data, the metrics file."""

    models: Path
    plots: Path
    metrics: Path

    def best(self, i: int) -> Path:
        return self.models / f"fold_{i}.pt"

    def done(self, i: int) -> Path:
        return self.models / f"fold_{i}.json"

    def phase_outputs(self, i: int, phase: str) -> Outputs:
        """fit's outputs of fold ``i``'s ``head`` or ``finetune`` phase."""
        stem = f"fold_{i}_head" if phase == "head" else f"fold_{i}"
        best = self.models / f"{stem}.pt"
        return Outputs(best, self.models / f"{stem}_last.pt", self.plots / f"fold_{i}" / phase)


class RowView:
    """Rows ``indices`` of several arrays stacked end to end (e.g. memory-mapped train and val
    images), fetched on demand by fancy indexing, without concatenating the arrays."""

    def __init__(self, parts: Sequence[np.ndarray], indices: np.ndarray) -> None:
        self.parts = list(parts)
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])
        self.indices = np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, idx: Any) -> np.ndarray:
        rows = np.atleast_1d(self.indices[np.asarray(idx, dtype=np.int64)])
        which = np.searchsorted(self.offsets, rows, side="right") - 1
        out = np.empty((rows.size, *self.parts[0].shape[1:]), dtype=self.parts[0].dtype)
        for k, part in enumerate(self.parts):
            sel = which == k
            if sel.any():
                out[sel] = part[rows[sel] - self.offsets[k]]
        return out


def make_folds(
    labels: np.ndarray, k: int, seed: int, classes: Sequence[str],
    groups: np.ndarray | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train indices, val indices) per fold: stratified, shuffled, deterministic by ``seed``.

    With ``groups`` (an id per image) in which some group has several images, folds come from
    ``StratifiedGroupKFold``: each group's images are in the same fold's val part.
    """
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=len(classes))
    for name, n in zip(classes, counts, strict=True):
        if n < k:
            raise MedclassError(
                f"class {name!r} has {n} train+val images; kfold.folds={k} needs at least {k} "
                "— lower kfold.folds or add images"
            )
    x = np.zeros((len(labels), 1))
    if groups is not None and len(np.unique(groups)) < len(labels):
        groups = np.asarray(groups)
        pairs = np.unique(np.stack([labels, np.unique(groups, return_inverse=True)[1]]), axis=1)
        per_class = np.bincount(pairs[0], minlength=len(classes))
        for name, n in zip(classes, per_class, strict=True):
            if n < k:
                raise MedclassError(
                    f"class {name!r} has {n} train+val image groups (duplicates / patient groups)"
                    f"; kfold.folds={k} needs at least {k} — lower kfold.folds or add images"
                )
        sgkf = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        return [(tr, va) for tr, va in sgkf.split(x, labels, groups)]
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(tr, va) for tr, va in skf.split(x, labels)]


def trainval_groups(split_dir: Path) -> np.ndarray | None:
    """Group id per train+val image (cache order: train then val, each in manifest order) from
    the split stage's ``groups.csv``; None when the split has no groups file."""
    mapping = read_groups(split_dir / GROUPS_FILE)
    if mapping is None:
        return None
    rows = read_manifest(split_dir / "manifest.csv")
    paths = [r.path for s in ("train", "val") for r in rows if r.split == s]
    missing = [p for p in paths if p not in mapping]
    if missing:
        raise MedclassError(
            f"{split_dir / GROUPS_FILE} lacks {missing[0]!r}; rerun `dvc repro split`"
        )
    return np.array([mapping[p] for p in paths], dtype=np.int64)


def architecture(params: Params, num_classes: int, in_chans: int) -> list[tuple[str, list[int]]]:
    """Parameter/buffer names and shapes of the model ``params`` builds (randomly initialised
    inside ``fork_rng``, so the global generator is left as it was). Part of the fold
    fingerprint, so finished folds saved by an older version of a backbone (renamed or
    reshaped weights) are retrained, not reused."""
    kwargs = dict(params.train.model_kwargs)
    if params.train.drop_path:
        kwargs["drop_path_rate"] = params.train.drop_path
    with torch.random.fork_rng(devices=[]):
        model = create_model(params.model, num_classes=num_classes, in_chans=in_chans,
                             pretrained="none", image_size=params.data.image_size, **kwargs)
    return [(k, list(v.shape)) for k, v in model.state_dict().items()]


def fold_weights(params: Params, num_classes: int, in_chans: int) -> Provenance:
    """Provenance of the ``train.pretrained`` weights every fold starts from: a model is built
    with them once (inside ``fork_rng``: the global generator is left as it was). Part of the
    fold fingerprint and of the fold checkpoints' metadata, so replaced weights retrain."""
    if params.train.pretrained == "none":
        return no_weights()
    with torch.random.fork_rng(devices=[]):
        model = build_model(params, num_classes, in_chans)
    return pretrained_provenance(model, params.train.pretrained)


def _phase_done(out: Outputs, fp: str) -> bool:
    """fit already finished this phase with this fingerprint (its last state says complete)."""
    if not (out.best.is_file() and out.last.is_file()):
        return False
    state = load_checkpoint(out.last)
    return state.get("fingerprint") == fp and bool(state.get("complete"))


def _history(last: Path) -> list[dict[str, Any]]:
    return list(load_checkpoint(last).get("history", [])) if last.is_file() else []


def _replay(live_dir: Path, history: list[dict[str, Any]]) -> None:
    """Rewrite a phase's dvclive curves from its history (for phases skipped on a rerun)."""
    _open_live(live_dir, history).end()


def train_fold(
    params: Params, data: DataBundle, fold: int, base_fp: str, paths: KFoldPaths,
    weights: Provenance,
) -> dict[str, Any]:
    """Head then finetune on one fold; returns its done record (reused if already finished)."""
    kf, seed = params.kfold, params.seed + fold
    mode = resolve_head_mode(params)
    head = head_phase(params, mode, epochs=kf.head_epochs)
    tune = finetune_phase(params, epochs=kf.epochs, patience=kf.patience)
    head_fp = fingerprint("head", head, base_fp)
    fold_fp = fingerprint("finetune", tune, head_fp)
    head_out, tune_out = paths.phase_outputs(fold, "head"), paths.phase_outputs(fold, "finetune")
    try:
        done = read_json(paths.done(fold)) if paths.done(fold).is_file() else {}
    except MedclassError:  # a damaged marker: retrain the fold
        done = {}
    if done.get("fingerprint") == fold_fp and paths.best(fold).is_file():
        log.info("fold %d: finished earlier with these params, skipped", fold)
        if is_main():
            for name, out in (("head", head_out), ("finetune", tune_out)):
                _replay(out.live_dir, done["history"][name])
        return done
    distributed.barrier()  # every rank has read the marker before rank 0 removes it
    if is_main():
        paths.done(fold).unlink(missing_ok=True)
    meta = {**model_meta(params, data, weights, (*TRAINING_GROUPS, "kfold")), "fold": fold,
            "folds": kf.folds}
    if _phase_done(head_out, head_fp):
        log.info("fold %d: head phase finished earlier, reused", fold)
        if is_main():
            _replay(head_out.live_dir, _history(head_out.last))
    else:
        seed_everything(seed, params.train.deterministic)
        model = build_model(params, len(data.classes), data.in_chans)
        fit(model, head, data, params.train, seed=seed, meta=meta, outputs=head_out,
            fingerprint=head_fp)
    seed_everything(seed, params.train.deterministic)  # as the finetune stage does
    model = build_model(params, len(data.classes), data.in_chans)
    model.load_state_dict(load_checkpoint(head_out.best)["model"])
    summary = fit(model, tune, data, params.train, seed=seed, meta=meta, outputs=tune_out,
                  fingerprint=fold_fp)
    summary.pop("phase")
    record = {
        "fingerprint": fold_fp, "fold": fold, "head_mode": mode, **summary,
        "history": {"head": _history(head_out.last), "finetune": _history(tune_out.last)},
    }
    if is_main():
        write_json(paths.done(fold), record)
        for p in (head_out.best, head_out.last, tune_out.last):  # only needed to resume a fold
            p.unlink(missing_ok=True)
    distributed.barrier()
    return record


def _remove_stale(paths: KFoldPaths, k: int) -> None:
    """Drop files of folds ``>= k`` (from a run with more folds) and all old plot data."""
    if paths.models.is_dir():
        for f in paths.models.iterdir():
            m = _FOLD_FILE.fullmatch(f.name)
            if m and int(m.group(1)) >= k:
                f.unlink()
    shutil.rmtree(paths.plots, ignore_errors=True)


def _predict(model: torch.nn.Module, ds: CachedDataset, transform: BatchTransform,
             cfg: StepConfig, batch_size: int, tta: str = "none") -> tuple[np.ndarray, np.ndarray]:
    loader = make_loader(ds, batch_size, shuffle=False)
    logits, labels = predict_logits(model, loader, transform, cfg, desc="predict", tta=tta)
    return torch.softmax(torch.from_numpy(logits).double(), 1).numpy(), labels  # float64


def _pick(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: metrics[k] for k in METRIC_KEYS}


def mean_std(rows: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per-key mean and sample std (ddof=1) over folds; ``None`` values (undefined AUC) skipped."""
    mean: dict[str, Any] = {}
    std: dict[str, Any] = {}
    for key in METRIC_KEYS:
        vals = [float(r[key]) for r in rows if r.get(key) is not None]
        mean[key] = float(np.mean(vals)) if vals else None
        std[key] = float(np.std(vals, ddof=1)) if len(vals) > 1 else None
    return mean, std


def run_kfold(params: Params, split_dir: Path, paths: KFoldPaths) -> dict[str, Any]:
    """Train every fold (resuming finished ones), evaluate on test, write metrics and plots."""
    t0 = time.perf_counter()
    kf = params.kfold
    check_image_size(params.model, params.data.image_size)
    data = load_data(split_dir, ("train", "val", "test"))
    train, val, test = (data.splits[s] for s in ("train", "val", "test"))
    parts = [train.images, val.images]
    labels = np.concatenate([train.labels, val.labels])
    folds = make_folds(labels, kf.folds, params.seed, data.classes,
                       groups=trainval_groups(split_dir))
    if is_main():
        _remove_stale(paths, kf.folds)
    distributed.barrier()
    weights = fold_weights(params, len(data.classes), data.in_chans)
    shared = fingerprint("kfold", params.model, params.seed, params.train.model_dump(mode="json"),
                         kf.folds, architecture(params, len(data.classes), data.in_chans),
                         weights, files=(split_dir / "stats.json", split_dir / "manifest.csv"))
    records = []
    for i, (tr, va) in enumerate(folds):
        bundle = DataBundle(data.classes, data.stats, {
            "train": CachedDataset(RowView(parts, tr), labels[tr]),
            "val": CachedDataset(RowView(parts, va), labels[va])})
        log.info("fold %d/%d: %d train, %d val images", i + 1, kf.folds, len(tr), len(va))
        base_fp = fingerprint(shared, i, va.tolist())
        records.append(train_fold(params, bundle, i, base_fp, paths, weights))
    if not is_main():  # the fold models are trained; rank 0 alone evaluates and writes
        return {}

    tta = params.evaluate.tta
    per_fold, test_probs = _evaluate_folds(params, folds, parts, labels, test, records, paths)
    methods = list(dict.fromkeys(kf.ensemble))
    probs = {m: ensemble_probs(test_probs, m) for m in dict.fromkeys(["mean", *methods])}
    variance, mi = member_variance(test_probs), mutual_information(test_probs)
    val_mean, val_std = mean_std([f["val"] for f in per_fold.values()])
    test_mean, test_std = mean_std([f["test"] for f in per_fold.values()])
    result = {
        "model": params.model, "folds": kf.folds, "n_trainval": int(len(labels)),
        "n_test": int(len(test)), "tta": tta,
        "val": {"mean": val_mean, "std": val_std},
        "test_single": {"mean": test_mean, "std": test_std},
        "test_ensemble": {m: _pick(summary_metrics(probs[m], test.labels)) for m in methods},
        "disagreement": {"variance": float(variance.mean()),
                         "mutual_information": float(mi.mean())},
        "per_fold": per_fold,
        "plan": params.plan.model_dump() if params.plan.budget_min is not None else None,
    }
    test_paths = [r.path for r in read_manifest(split_dir / "manifest.csv") if r.split == "test"]
    write_ensemble_csv(paths.plots / "predictions.csv", test_paths, test.labels,
                       {m: probs[m].argmax(axis=1) for m in methods}, probs["mean"], variance,
                       mi, data.classes)
    write_curves(paths.plots / "curves", records)
    tag = repro.tag(params.repro.mode, params.repro.threads)
    write_json(paths.metrics, {**result, "repro": tag})
    log.info("kfold: %d folds in %.1fs; val acc %.4f ± %s; ensemble %s", kf.folds,
             time.perf_counter() - t0, val_mean["accuracy"], val_std["accuracy"],
             {m: round(v["accuracy"], 4) for m, v in result["test_ensemble"].items()})
    return result


def _evaluate_folds(params: Params, folds: Sequence[tuple[np.ndarray, np.ndarray]],
                    parts: list[np.ndarray], labels: np.ndarray, test: CachedDataset,
                    records: list[dict[str, Any]], paths: KFoldPaths
                    ) -> tuple[dict[str, dict[str, Any]], list[np.ndarray]]:
    """Each fold's best checkpoint on its validation fold and on test: the ``per_fold``
    metrics and the test probabilities of every fold (in fold order)."""
    cfg = StepConfig(resolve_device(params.train.device), progress=params.train.progress)
    bs, tta = params.train.eval_batch_size, params.evaluate.tta
    per_fold, test_probs = {}, []
    for i, (tr, va) in enumerate(folds):
        ckpt = load_checkpoint(paths.best(i))
        model = model_from_checkpoint(ckpt).to(cfg.device)
        transform = BatchTransform(ckpt["meta"]["mean"], ckpt["meta"]["std"])
        vp, vy = _predict(model, CachedDataset(RowView(parts, va), labels[va]), transform, cfg, bs,
                          tta)
        tp, ty = _predict(model, test, transform, cfg, bs, tta)
        test_probs.append(tp)
        rec = records[i]
        per_fold[f"fold_{i}"] = {
            "n_train": len(tr), "n_val": len(va), "epochs_run": rec["epochs_run"],
            "best_epoch": rec["best_epoch"], "val": _pick(summary_metrics(vp, vy)),
            "test": _pick(summary_metrics(tp, ty))}
    return per_fold, test_probs
