"""``train.pretrained``: local files must live under ``weights/`` (a DVC dependency of the
training stages), and checkpoints record which weights file was loaded and its SHA-256 (local
files, and hub files as timm resolved them in an offline, pre-filled Hugging Face cache)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

from medclass.config import load_params, parse_params
from medclass.data.bundle import DataBundle
from medclass.errors import MedclassError
from medclass.io import load_checkpoint
from medclass.models.pretrained import hub_filenames, pretrained_provenance
from medclass.stages import finetune, head, prepare, split
from medclass.train.context import build_model, model_meta
from medclass.train.kfold import fold_weights

ARCH = "test_resnet.r160_in1k"  # timm's tiny test network (about 0.5 M parameters), on the Hub
MODEL = f"timm/{ARCH}"
TINY = {
    "model": MODEL,
    "data": {"image_size": 32, "synthetic": {"classes": ["normal", "nodule", "effusion"],
                                             "images_per_class": 8, "size": 32}},
    "train": {"pretrained": "weights/tiny.safetensors", "progress": False, "batch_size": 8},
    "head": {"epochs": 1},
}


def _write_weights(path: Path, seed: int) -> str:
    """A 1000-class RGB state dict of ``ARCH`` (seeded) as safetensors; returns its SHA-256."""
    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(timm.create_model(ARCH, pretrained=False).state_dict(), str(path))
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("value", [
    "/tmp/resnet18.safetensors", "resnet18.safetensors", "~/weights/resnet18.safetensors",
    "../weights/resnet18.safetensors", "weights/../resnet18.safetensors", "data/w.pth"])
def test_path_outside_weights_is_refused_in_one_line(value: str) -> None:
    with pytest.raises(MedclassError) as err:
        parse_params({"model": MODEL, "train": {"pretrained": value}})
    msg = str(err.value)
    name = Path(value).name
    assert "\n" not in msg
    assert msg.startswith("params.yaml: train.pretrained: ")
    assert "outside weights/" in msg and f"`dvc add weights/{name}`" in msg


@pytest.mark.parametrize("value", ["none", "hub", "weights/r18.safetensors",
                                   "./weights/sub/r18.pth"])
def test_none_hub_and_files_under_weights_are_accepted(value: str) -> None:
    assert parse_params({"model": MODEL, "train": {"pretrained": value}}).train.pretrained == value


def test_local_file_sha256_lands_in_meta(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    params = parse_params({"model": MODEL, "train": {"pretrained": "weights/a.safetensors"}})
    stats = {"classes": ["a", "b", "c"], "channels": 3, "image_size": 32,
             "mean": [0.5] * 3, "std": [0.25] * 3}
    data = DataBundle(stats["classes"], stats, {})
    metas = []
    for seed in (0, 1):  # the same path, replaced by other weights
        sha = _write_weights(tmp_path / "weights/a.safetensors", seed)
        model = build_model(params, 3, 3)
        loaded = load_file("weights/a.safetensors")["conv1.0.weight"]
        assert torch.equal(model.state_dict()["conv1.0.weight"], loaded)
        meta = model_meta(params, data, pretrained_provenance(model, params.train.pretrained))
        assert meta["pretrained_file"] == "weights/a.safetensors"
        assert meta["pretrained_sha256"] == sha
        metas.append(meta)
    assert metas[0]["pretrained_sha256"] != metas[1]["pretrained_sha256"]


def test_no_pretrained_records_nulls() -> None:
    model = build_model(parse_params({"model": MODEL}), 3, 3)
    assert pretrained_provenance(model, "none") == {"pretrained_file": None,
                                                    "pretrained_sha256": None}


def test_kfold_fingerprints_the_weights_without_drawing_random_numbers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    params = parse_params({"model": MODEL, "train": {"pretrained": "weights/k.safetensors"}})
    sha = _write_weights(tmp_path / "weights/k.safetensors", 0)
    before = torch.get_rng_state()
    assert fold_weights(params, 3, 1)["pretrained_sha256"] == sha
    assert torch.equal(torch.get_rng_state(), before)


def test_head_checkpoint_records_the_file_and_finetune_refuses_replaced_weights(
        stage_project, monkeypatch: pytest.MonkeyPatch) -> None:
    root = stage_project("pretrained_meta", TINY, [prepare, split])
    monkeypatch.chdir(root)
    sha = _write_weights(root / "weights/tiny.safetensors", 0)
    head.main(load_params())
    meta = load_checkpoint("models/head.pt")["meta"]
    assert (meta["pretrained_file"], meta["pretrained_sha256"]) == ("weights/tiny.safetensors", sha)
    _write_weights(root / "weights/tiny.safetensors", 1)
    with pytest.raises(MedclassError, match="other pretrained weights .* run `dvc repro`"):
        finetune.main(load_params())


def test_hub_filenames_follow_timms_order() -> None:
    assert hub_filenames(None) == ["model.safetensors", "pytorch_model.bin"]
    assert hub_filenames("weights.bin") == ["weights.safetensors", "weights.bin"]
    assert hub_filenames("model.safetensors") == ["model.safetensors"]


HUB_SCRIPT = textwrap.dedent("""
    import json
    from medclass.errors import MedclassError
    from medclass.models import create_model
    from medclass.models.pretrained import hub_weights_file, pretrained_provenance

    out = {}
    try:  # not in the cache, offline: the clear error, not a download
        create_model("timm/test_vit.r160_in1k", num_classes=3, pretrained="hub", image_size=32)
    except MedclassError as exc:
        out["offline"] = str(exc)
    try:
        hub_weights_file({"hf_hub_id": "medclass-tests/absent", "architecture": "absent"})
    except MedclassError as exc:
        out["uncached"] = str(exc)
    model = create_model("timm/%s", num_classes=3, in_chans=3, pretrained="hub")
    out["provenance"] = pretrained_provenance(model, "hub")
    out["conv_sum"] = float(model.state_dict()["conv1.0.weight"].double().sum())
    print(json.dumps(out))
""") % ARCH


def test_hub_weights_resolved_by_timm_are_recorded(tmp_path: Path) -> None:
    """A Hugging Face cache (its documented layout: ``refs/main`` naming a snapshot) holding
    the tiny network's ``model.safetensors``; offline, timm loads it, and the provenance names
    that Hub file and its SHA-256."""
    repo = tmp_path / "hf" / f"models--timm--{ARCH}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs/main").write_text(commit)
    sha = _write_weights(repo / "snapshots" / commit / "model.safetensors", 3)
    expected = load_file(repo / "snapshots" / commit / "model.safetensors")["conv1.0.weight"]
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1",
           "TORCH_HOME": str(tmp_path / "torch"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    proc = subprocess.run([sys.executable, "-c", HUB_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["provenance"] == {"pretrained_file": f"hf-hub:timm/{ARCH}/model.safetensors",
                                 "pretrained_sha256": sha}
    assert out["conv_sum"] == pytest.approx(float(expected.double().sum()))
    assert "could not fetch hub weights for timm/test_vit.r160_in1k" in out["offline"]
    assert "not in the local Hugging Face or torch hub cache" in out["uncached"]
