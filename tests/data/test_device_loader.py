"""DeviceLoader (train.data_on_device): the same batches as the host DataLoader (fit() with
either: tests/train/test_loop.py)."""

import numpy as np
import pytest
import torch

from medclass.data.dataset import CachedDataset, DeviceLoader, keep_on_device, make_loader

CPU = torch.device("cpu")


def _data(n=37):
    rng = np.random.default_rng(0)
    return CachedDataset(rng.integers(0, 256, (n, 1, 4, 4), dtype=np.uint8), np.arange(n) % 3)


def _batches(loader, epoch=0):
    loader.sampler.set_epoch(epoch)
    return [(x.clone(), y.clone()) for x, y in loader]


@pytest.mark.parametrize(("shuffle", "drop_last", "shard"), [
    (True, True, None), (False, False, None), (True, False, None), (True, True, (1, 2)),
    (False, False, (0, 2)),
])
def test_same_batches_as_the_host_loader(shuffle, drop_last, shard):
    ds = _data()
    kw = {"shuffle": shuffle, "seed": 5, "drop_last": drop_last, "shard": shard}
    host, dev = make_loader(ds, 8, **kw), make_loader(ds, 8, device=CPU, **kw)
    assert isinstance(dev, DeviceLoader)
    assert len(dev) == len(host)
    for epoch in (0, 3):
        a, b = _batches(host, epoch), _batches(dev, epoch)
        assert len(a) == len(b) > 0
        for (xa, ya), (xb, yb) in zip(a, b, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    if shuffle:  # the epoch reseeds the order, as with the host loader
        assert not torch.equal(_batches(dev, 0)[0][1], _batches(dev, 1)[0][1])


def test_keep_on_device_settings():
    assert keep_on_device(True, 10**12, CPU) is True
    assert keep_on_device(False, 1, CPU) is False
    assert keep_on_device("auto", 1, CPU) is False  # auto: CUDA only



def test_fold_row_views_and_chunked_copy():
    from medclass.data.dataset import _to_device
    from medclass.train.kfold import RowView

    a, b = _data(10).images, _data(7).images + 1
    view = RowView([a, b], np.array([12, 0, 9, 16, 3]))
    ds = CachedDataset(view, np.zeros(5, np.int64))
    assert ds.nbytes == 5 * 16
    got = _to_device(view, 5, CPU, chunk=2)
    assert torch.equal(got, torch.from_numpy(np.stack([b[2], a[0], a[9], b[6], a[3]])))
