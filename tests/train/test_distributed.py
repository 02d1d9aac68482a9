"""DDP: shard maths, the launcher, and finetune on 2 CPU processes (gloo) vs one process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from medclass.config import load_params
from medclass.data.dataset import BatchTransform, CachedDataset, make_loader
from medclass.launch import main as launch_main
from medclass.train import distributed

TINY = {
    "model": "simple_cnn_tiny",
    "seed": 3,
    "data": {"image_size": 16, "synthetic": {"classes": ["normal", "nodule"],
                                             "images_per_class": 24, "size": 16}},
    "train": {"progress": False, "batch_size": 16, "eval_batch_size": 16, "drop_rate": 0.0},
    "head": {"epochs": 1},
    "finetune": {"epochs": 3, "patience": 10},
    "kfold": {"folds": 2, "head_epochs": 1, "epochs": 1},
}


def _dataset(n: int = 37) -> CachedDataset:
    images = np.arange(n * 4, dtype=np.uint8).reshape(n, 1, 2, 2)
    return CachedDataset(images, np.arange(n) % 2)


@pytest.mark.parametrize("shuffle", [True, False])
def test_rank_shards_together_are_the_single_process_batches(shuffle: bool) -> None:
    ds = _dataset()
    single = make_loader(ds, 8, shuffle=shuffle, seed=5, drop_last=shuffle)
    shards = [make_loader(ds, 8, shuffle=shuffle, seed=5, drop_last=shuffle, shard=(r, 2))
              for r in range(2)]
    for loader in (single, *shards):
        loader.sampler.set_epoch(2)
    whole = [x for x, _ in single]
    parts = [list(s) for s in shards]
    assert len(parts[0]) == len(parts[1]) >= len(whole) - 1
    for i, batch in enumerate(whole):
        if len(batch) < 8:  # the ragged tail: DistributedSampler pads it by repeating items
            continue
        merged = torch.stack([parts[0][i][0], parts[1][i][0]], 1).reshape(batch.shape)
        assert torch.equal(merged, batch)  # rank r holds items r, r+2, r+4 of batch i


def test_shard_augmentation_matches_single_process() -> None:
    x = torch.randint(0, 256, (8, 1, 12, 12), dtype=torch.uint8)
    tf = BatchTransform([0.5], [0.25], augment="light")
    whole = tf(x, train=True, generator=torch.Generator().manual_seed(1))
    for rank in range(2):
        part = tf(x[rank::2], train=True, generator=torch.Generator().manual_seed(1),
                  shard=(rank, 2))
        torch.testing.assert_close(part, whole[rank::2])
    other = tf(x[0::2], train=True, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(other, whole[0::2])  # without shard= the draws would differ


def _tiny_net() -> torch.nn.Module:
    torch.manual_seed(0)  # no BatchNorm: DDP must then reproduce one process to rounding
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(),
                               torch.nn.Linear(16, 2))


def _train_epoch(shard: tuple[int, int] | None, mix: bool = False) -> dict[str, torch.Tensor]:
    """One epoch of our engine (light augmentation, grad clipping, AdamW) on fixed data;
    ``mix``: with mixup/CutMix (whose pairs span the ranks' shards)."""
    from torch.nn.parallel import DistributedDataParallel

    from medclass.config import MixupParams
    from medclass.train.engine import StepConfig, train_one_epoch
    from medclass.train.mixing import BatchMixer

    g = np.random.default_rng(0)
    ds = CachedDataset(g.integers(0, 256, (45, 1, 10, 10), dtype=np.uint8), g.integers(0, 2, 45))
    model = _tiny_net()
    net = DistributedDataParallel(model) if shard else model
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 / (1 + step))
    loader = make_loader(ds, 8, shuffle=True, seed=1, drop_last=True, shard=shard)
    cfg = StepConfig(torch.device("cpu"), grad_clip=1.0, progress=False)
    tf = BatchTransform([0.5], [0.25], augment="light")
    mixer = BatchMixer(MixupParams(mixup_alpha=0.4, cutmix_alpha=1.0), 2, 0.1) if mix else None
    for epoch in range(2):
        loader.sampler.set_epoch(epoch)
        train_one_epoch(net, loader, tf, torch.nn.CrossEntropyLoss(), opt, sched, cfg,
                        generator=torch.Generator().manual_seed(epoch), mixer=mixer)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _ddp_worker(rank: int, world: int, port: int, out: str, mix: bool = False) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        state = _train_epoch((rank, world), mix)
        if rank == 0:
            torch.save(state, out)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("mix", [False, True])
def test_ddp_engine_reproduces_single_process_training(tmp_path: Path, mix: bool) -> None:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "ddp.pt"
    mp.spawn(_ddp_worker, args=(2, port, str(out), mix), nprocs=2, join=True)
    single, ddp = _train_epoch(None, mix), torch.load(out, weights_only=True)
    start = _tiny_net().state_dict()
    for k in single:
        assert not torch.allclose(single[k], start[k])  # it trained
        torch.testing.assert_close(ddp[k], single[k], rtol=1e-4, atol=1e-5)


def test_single_process_helpers_are_identity() -> None:
    t = torch.arange(10.0)
    assert distributed.info() == distributed.DistInfo()
    assert torch.equal(distributed.gather_interleaved(t, 7), t[:7])
    assert torch.equal(distributed.all_reduce_sum(t.clone()), t)


def test_launcher_refuses_multinode_without_endpoint(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        launch_main(["--nnodes", "2", "medclass.stages.finetune"])
    assert exc.value.code == 2
    assert "train.rdzv_endpoint" in capsys.readouterr().err


def test_batch_size_must_split_over_processes(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(
        {"train": {"batch_size": 10, "nproc_per_node": 4}}))
    with pytest.raises(Exception, match="divide evenly"):
        load_params(tmp_path / "params.yaml")


@pytest.fixture(scope="module")
def project(stage_project) -> Path:
    """Prepared data and a trained head checkpoint in a tmp project."""
    from medclass.stages import head, prepare, split  # heavy imports: not in spawned workers

    return stage_project("ddp", TINY, (prepare, split, head))


def _launch(root: Path, nproc: int, stage: str) -> str:
    """Run a stage through the launcher in a subprocess; returns its stderr."""
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["train"]["nproc_per_node"] = nproc
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "medclass.launch", "--nproc-per-node", str(nproc),
         f"medclass.stages.{stage}"], cwd=root, env=env, capture_output=True, text=True,
        timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr


def _clear_finetune(root: Path) -> None:
    for p in ("metrics/finetune.json", "models/model.pt", "models/ckpt/finetune_last.pt"):
        (root / p).unlink(missing_ok=True)
    shutil.rmtree(root / "plots/finetune", ignore_errors=True)


def test_two_process_finetune_and_kfold_through_torchrun(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medclass.stages import finetune

    _clear_finetune(project)
    monkeypatch.chdir(project)
    finetune.main(load_params())  # the single-process reference, in this process
    one = json.loads((project / "metrics/finetune.json").read_text())
    _clear_finetune(project)
    log = _launch(project, 2, "finetune")
    two = json.loads((project / "metrics/finetune.json").read_text())
    assert "torchrun" in log  # really launched through torchrun
    assert two["epochs_run"] == one["epochs_run"] == 3
    # same global batches, augmentation and all-reduced gradients: only BatchNorm statistics
    # (per-rank halves of each batch; SyncBatchNorm needs CUDA) and summation order differ
    assert two["best_val_loss"] == pytest.approx(one["best_val_loss"], abs=0.03), (one, two)
    assert two["final_train_loss"] == pytest.approx(one["final_train_loss"], abs=0.03)
    # outputs were written once, by rank 0 alone
    assert log.count("finetune epoch 3:") == 1
    rows = (project / "plots/finetune/plots/metrics/train/loss.tsv").read_text().splitlines()
    assert len(rows) == 1 + 3
    assert not list(project.glob("models/**/.*.tmp"))
    ckpt = torch.load(project / "models/model.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in ckpt["model"])  # plain, loadable weights

    log = _launch(project, 2, "kfold")
    assert log.count("kfold: 2 folds in") == 1
    result = json.loads((project / "metrics/kfold.json").read_text())
    assert set(result["per_fold"]) == {"fold_0", "fold_1"}
    assert {p.name for p in (project / "models/kfold").iterdir()} == {
        "fold_0.pt", "fold_0.json", "fold_1.pt", "fold_1.json"}
