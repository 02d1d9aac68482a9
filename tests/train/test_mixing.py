"""train.mixup: timm Mixup/CutMix in the training step, seeded, shard-exact, soft targets."""

import numpy as np
import pytest
import torch

import medclass.train.mixing as mixing
from medclass.config import MixupParams, TrainParams, parse_params
from medclass.data.bundle import DataBundle
from medclass.data.dataset import CachedDataset
from medclass.errors import MedclassError
from medclass.io import load_checkpoint
from medclass.models import create_model
from medclass.train.loop import Outputs, Phase, fit
from medclass.train.mixing import BatchMixer, build_mixer

K = 3


def _batch(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 6, 6, generator=g)
    y = torch.tensor([i % K for i in range(n)])
    return x, y


def _gen(seed=1):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("params", [MixupParams(mixup_alpha=0.4),
                                    MixupParams(cutmix_alpha=1.0),
                                    MixupParams(mixup_alpha=0.4, cutmix_alpha=1.0)])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_mixed_targets_are_distributions_and_match_the_images(params, smoothing):
    x, y = _batch()
    mixed, t = BatchMixer(params, K, smoothing)(x.clone(), y, _gen())
    assert t.shape == (8, K)
    torch.testing.assert_close(t.sum(1), torch.ones(8))
    if smoothing:
        assert t.min() >= smoothing / K - 1e-6
    # every pixel is lam * x + (1 - lam) * x.flip(0) (mixup) or one of the two (CutMix);
    # the share of image i in the mix is its target's weight on y_i (smoothing aside)
    own = (t[torch.arange(8), y] - smoothing / K) / (1 - smoothing)
    for i in range(8):
        if y[i] == y.flip(0)[i]:
            continue
        partner = x.flip(0)[i]
        lam = float(own[i])
        if params.cutmix_alpha and not params.mixup_alpha:
            kept = torch.isclose(mixed[i], x[i]) & ~torch.isclose(x[i], partner)
            swapped = torch.isclose(mixed[i], partner) & ~torch.isclose(x[i], partner)
            assert int(kept.sum()) + int(swapped.sum()) == 36
            assert int(kept.sum()) / 36 == pytest.approx(lam, abs=1e-6)
        elif not params.cutmix_alpha:
            torch.testing.assert_close(mixed[i], lam * x[i] + (1 - lam) * partner)


def test_off_by_default_and_unmixed_batches_keep_their_images():
    assert build_mixer(MixupParams(), K, 0.1) is None  # both alphas 0: the step is unchanged
    assert build_mixer(TrainParams().mixup, K, 0.1) is None
    x, y = _batch()
    out, t = BatchMixer(MixupParams(mixup_alpha=1.0, prob=0.0), K, 0.0)(x.clone(), y, _gen())
    assert torch.equal(out, x)
    assert torch.equal(t, torch.nn.functional.one_hot(y, K).float())


def test_draws_come_from_the_torch_generator_and_leave_numpy_alone():
    x, y = _batch()
    mixer = BatchMixer(MixupParams(mixup_alpha=0.4, cutmix_alpha=1.0), K, 0.1)
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = mixer(x.clone(), y, _gen(5))
    assert np.array_equal(np.random.get_state()[1], before)  # global NumPy state untouched
    np.random.seed(999)
    b = mixer(x.clone(), y, _gen(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = mixer(x.clone(), y, _gen(6))
    assert not torch.equal(a[1], c[1])


def test_odd_batch_leaves_the_last_image_unmixed():
    x, y = _batch(5)
    mixed, t = BatchMixer(MixupParams(mixup_alpha=1.0), K, 0.0)(x.clone(), y, _gen())
    assert mixed.shape == x.shape and torch.equal(mixed[4], x[4])
    assert torch.equal(t[4], torch.nn.functional.one_hot(y[4], K).float())


def test_ddp_shards_get_their_part_of_the_single_process_mix(monkeypatch):
    x, y = _batch(8)
    mixer = BatchMixer(MixupParams(mixup_alpha=0.4, cutmix_alpha=1.0), K, 0.1)
    whole = mixer(x.clone(), y, _gen(3))
    for rank in range(2):
        def gather(t, n, rank=rank):  # what all_gather would return on 2 ranks
            full = x if t.is_floating_point() else y
            assert n == len(full) and torch.equal(t, full[rank::2])
            return full.clone()

        monkeypatch.setattr(mixing.distributed, "gather_interleaved", gather)
        part, target = mixer(x[rank::2].clone(), y[rank::2], _gen(3), (rank, 2))
        assert torch.equal(part, whole[0][rank::2]) and torch.equal(target, whole[1][rank::2])


def test_mixup_needs_an_even_batch():
    with pytest.raises(MedclassError, match="train: mixup .* even batch_size"):
        parse_params({"train": {"batch_size": 15, "mixup": {"mixup_alpha": 0.2}}})
    with pytest.raises(MedclassError, match="train.mixup.prob"):
        parse_params({"train": {"mixup": {"prob": 1.5}}})


def _bundle(n=64, size=12):
    rng = np.random.default_rng(0)

    def make(k):
        x = rng.integers(0, 60, size=(k, 1, size, size), dtype=np.uint8)
        y = np.arange(k) % 2
        for i, lab in enumerate(y):
            x[i, 0, 4:8, (2 if lab == 0 else size - 6):][:, :4] = 230
        return CachedDataset(x, y)

    stats = {"mean": [0.2], "std": [0.3], "channels": 1, "image_size": size,
             "classes": ["left", "right"]}
    return DataBundle(["left", "right"], stats, {"train": make(n), "val": make(32)})


def _fit(root, **train):
    torch.manual_seed(0)
    model = create_model("simple_cnn_tiny", num_classes=2, in_chans=1)
    out = Outputs(root / "best.pt", root / "last.pt", root / "live")
    params = TrainParams(batch_size=16, progress=False, augment="none", label_smoothing=0.1,
                         **train)
    phase = Phase("t", epochs=2, head_lr=3e-3, backbone_lr=3e-3, weight_decay=0.0)
    summary = fit(model, phase, _bundle(), params, seed=0, meta={}, outputs=out,
                  fingerprint="fp")
    return summary, load_checkpoint(out.best)["model"]


def test_fit_with_mixup_is_deterministic_and_differs_from_plain(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mix = {"mixup": MixupParams(mixup_alpha=0.4, cutmix_alpha=1.0)}
    plain, _ = _fit(tmp_path / "plain")
    a, wa = _fit(tmp_path / "a", **mix)
    b, wb = _fit(tmp_path / "b", **mix)
    assert a == b and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a["final_train_loss"] != plain["final_train_loss"]
    assert 0.0 <= a["final_train_acc"] <= 1.0
