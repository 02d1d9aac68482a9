"""Tensor datasets, epoch-seeded sampling and batch transforms."""

import numpy as np
import torch

from medclass.data.dataset import BatchTransform, CachedDataset, EpochSampler, make_loader


def _ds(n=10):
    images = np.arange(n * 1 * 4 * 4, dtype=np.uint8).reshape(n, 1, 4, 4)
    return CachedDataset(images, np.arange(n) % 2)


def test_loader_yields_uint8_batches_in_order():
    batches = list(make_loader(_ds(), 4, shuffle=False))
    assert [len(y) for _, y in batches] == [4, 4, 2]
    x, y = batches[0]
    assert x.dtype == torch.uint8 and x.shape == (4, 1, 4, 4)
    assert y.tolist() == [0, 1, 0, 1]


def test_epoch_sampler_is_seeded_per_epoch():
    s = EpochSampler(50, seed=3)
    s.set_epoch(0)
    a = list(s)
    s.set_epoch(1)
    b = list(s)
    s.set_epoch(0)
    assert list(s) == a
    assert a != b
    assert sorted(a) == list(range(50))


def test_normalisation_uses_mean_std():
    t = BatchTransform([0.5], [0.25])
    x = torch.full((2, 1, 3, 3), 255, dtype=torch.uint8)
    assert torch.allclose(t(x, train=False), torch.full((2, 1, 3, 3), 2.0))


def test_light_augmentation_changes_batch_keeps_shape_and_is_seeded():
    t = BatchTransform([0.5], [0.5], augment="light")
    x = torch.randint(0, 256, (4, 1, 16, 16), dtype=torch.uint8)
    a = t(x, train=True, generator=torch.Generator().manual_seed(1))
    b = t(x, train=True, generator=torch.Generator().manual_seed(1))
    c = t(x, train=True, generator=torch.Generator().manual_seed(2))
    plain = t(x, train=False)
    assert a.shape == x.shape and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.allclose(a, plain)
    # per-sample: samples of one batch get different transforms
    same = t(x[:1].repeat(4, 1, 1, 1), train=True, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(same[0], same[1])
