"""Augmentation presets and knobs (train.augment, train.aug) and test-time views."""

import math

import pytest
import torch

from medclass.config import TrainParams
from medclass.data.augment import PRESETS, Augmenter, AugmentSpec, resolve_spec, tta_views
from medclass.data.dataset import BatchTransform

X = torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(0))


def _aug(spec: AugmentSpec, seed: int = 1, x: torch.Tensor = X) -> torch.Tensor:
    return Augmenter(spec)(x.clone(), torch.Generator().manual_seed(seed))


def test_presets_grow_stronger_and_none_is_identity():
    assert not PRESETS["none"].active
    light, medical, strong = PRESETS["light"], PRESETS["medical"], PRESETS["strong"]
    assert light.rotate < medical.rotate < strong.rotate
    assert light.hflip == 0 and medical.hflip == 0.5 and strong.erase > 0
    assert all(p.vflip == 0 for p in PRESETS.values())  # chest films keep their up/down


def test_overrides_replace_single_knobs_and_none_keeps_the_preset():
    spec = resolve_spec("light", {"hflip": 1.0, "rotate": None})
    assert spec.hflip == 1.0 and spec.rotate == PRESETS["light"].rotate
    with pytest.raises(ValueError, match="unknown augmentation preset"):
        resolve_spec("heavy")


@pytest.mark.parametrize("knob", ["rotate", "scale", "shift", "brightness", "contrast",
                                  "hflip", "vflip", "blur", "erase"])
def test_each_knob_changes_the_batch_keeps_shape_dtype_range_and_is_seeded(knob):
    value = {"rotate": 30.0, "hflip": 1.0, "vflip": 1.0, "blur": 1.0, "erase": 1.0}.get(knob, 0.3)
    spec = AugmentSpec(**{knob: value})
    a, b, c = _aug(spec, 1), _aug(spec, 1), _aug(spec, 2)
    assert a.shape == X.shape and a.dtype == X.dtype
    assert not torch.allclose(a, X)
    assert torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1
    if knob not in ("hflip", "vflip"):  # p=1 flips are the same for every seed
        assert not torch.equal(a, c)


def test_flips_mirror_exactly_and_probability_zero_never_flips():
    assert torch.equal(_aug(AugmentSpec(hflip=1.0)), X.flip(3))
    assert torch.equal(_aug(AugmentSpec(vflip=1.0)), X.flip(2))
    half = _aug(AugmentSpec(hflip=0.5), x=X[:1].repeat(64, 1, 1, 1))
    flipped = sum(torch.equal(s, X[0].flip(2)) for s in half)
    assert 10 < flipped < 54  # about half of the samples, drawn per sample


def test_erase_fills_one_rectangle_per_sample():
    out = _aug(AugmentSpec(erase=1.0))
    for before, after in zip(X, out, strict=True):
        changed = (before != after)[0]
        rows, cols = changed.any(1).nonzero(), changed.any(0).nonzero()
        assert 0 < changed.sum() <= 0.2 * 256 + 16
        area = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert changed.sum() >= 0.9 * area  # a rectangle (noise rarely equals the pixel)


@pytest.mark.parametrize("augment", ["medical", "strong", AugmentSpec(policy="trivialaugment"),
                                     AugmentSpec(clahe=0.5, policy="randaugment"),
                                     AugmentSpec(saturation=0.3, hue=0.1, multiscale=(12, 20))],
                         ids=["medical", "strong", "trivialaugment", "clahe+randaugment",
                              "colour+multiscale"])
def test_augmentation_shards_like_a_single_process(augment):
    channels = 3 if isinstance(augment, AugmentSpec) and augment.colour else 1
    tf = BatchTransform([0.5] * channels, [0.25] * channels, augment=augment)
    x = torch.randint(0, 256, (8, channels, 16, 16), dtype=torch.uint8)
    whole = tf(x, train=True, generator=torch.Generator().manual_seed(3))
    for rank in range(2):
        part = tf(x[rank::2], train=True, generator=torch.Generator().manual_seed(3),
                  shard=(rank, 2))
        torch.testing.assert_close(part, whole[rank::2])


def test_train_params_take_preset_and_knobs():
    p = TrainParams(augment="strong", aug={"hflip": 0.0})
    assert resolve_spec(p.augment, p.aug.model_dump()).hflip == 0.0
    with pytest.raises(ValueError):
        TrainParams(aug={"hflip": 2.0})
    with pytest.raises(ValueError):
        TrainParams(aug={"flip": 0.5})


def test_tta_views():
    assert len(tta_views("none")) == 1
    ident, mirror = tta_views("flip")
    assert torch.equal(ident(X), X) and torch.equal(mirror(X), X.flip(3))
    views = tta_views("flip_rot")
    assert len(views) == 6
    outs = [v(X) for v in views]
    assert all(o.shape == X.shape for o in outs)
    for i in range(6):  # six distinct views
        for j in range(i):
            assert not torch.allclose(outs[i], outs[j])
    with pytest.raises(ValueError, match="unknown TTA"):
        tta_views("rot")
    assert math.isclose(float(views[0](X).sum()), float(X.sum()))


def test_blur_smooths_and_keeps_the_mean():
    out = _aug(AugmentSpec(blur=1.0))
    assert out.diff(dim=3).abs().mean() < X.diff(dim=3).abs().mean()  # less high frequency
    torch.testing.assert_close(out.mean(), X.mean(), atol=0.02, rtol=0)


# low-contrast noise (values 100-140): CLAHE's clip limit binds, so per-sample limits differ
X8 = (torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(5)) * 40 + 100)
X8 = X8.round() / 255


@pytest.mark.parametrize("spec", [AugmentSpec(clahe=1.0), AugmentSpec(policy="randaugment"),
                                  AugmentSpec(policy="trivialaugment")],
                         ids=["clahe", "randaugment", "trivialaugment"])
def test_uint8_knobs_change_the_batch_per_sample_and_are_seeded(spec):
    same = X8[:1].repeat(16, 1, 1, 1)
    a, b = _aug(spec, 1, same), _aug(spec, 1, same)
    assert a.shape == same.shape and a.dtype == same.dtype
    assert torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1
    assert not torch.allclose(a, same)
    # one image repeated: per-sample draws give different results across the batch
    assert len({tuple(s.flatten().tolist()) for s in a}) > 1
    assert torch.equal(a * 255, (a * 255).round())  # still k/255 values


def test_clahe_raises_local_contrast_and_handles_rgb():
    flat = (torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 40 + 100)
    flat = flat.round() / 255
    out = _aug(AugmentSpec(clahe=1.0), 1, flat)
    assert out.std() > flat.std()
    rgb = (torch.rand(2, 3, 32, 32) * 255).round() / 255
    assert _aug(AugmentSpec(clahe=1.0), 1, rgb).shape == rgb.shape


def test_policy_params_are_validated():
    assert TrainParams(aug={"policy": "randaugment", "policy_ops": 3}).aug.policy_ops == 3
    for bad in ({"policy": "autoaugment"}, {"policy_magnitude": 31}, {"clahe": 1.5}):
        with pytest.raises(ValueError):
            TrainParams(aug=bad)
    spec = resolve_spec("light", {"policy": "randaugment", "policy_magnitude": 5})
    assert spec.policy == "randaugment" and spec.policy_magnitude == 5 and spec.active
    assert not resolve_spec("none", {"policy": "none"}).active


def test_describe_lists_active_knobs_only():
    assert PRESETS["none"].describe() == "off"
    assert PRESETS["medical"].describe().startswith("rotate 15, scale 0.15")
    spec = resolve_spec("none", {"policy": "randaugment", "clahe": 0.5})
    assert spec.describe() == "clahe 0.5, randaugment (2 ops, magnitude 9)"


RGB = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("knob", ["saturation", "hue"])
def test_colour_jitter_changes_rgb_per_sample_is_seeded_and_keeps_greys(knob):
    spec = AugmentSpec(**{knob: 0.4})
    a, b, c = _aug(spec, 1, RGB), _aug(spec, 1, RGB), _aug(spec, 2, RGB)
    assert a.shape == RGB.shape and a.dtype == RGB.dtype and a.min() >= 0 and a.max() <= 1
    assert not torch.allclose(a, RGB) and torch.equal(a, b) and not torch.equal(a, c)
    grey = RGB[:, :1].repeat(1, 3, 1, 1)  # no chroma: neither knob moves a grey pixel
    assert torch.allclose(_aug(spec, 1, grey), grey, atol=1e-5)


def test_saturation_zero_gives_luma_grey_and_the_identity_is_exact():
    from medclass.data.augment import _colour

    n = RGB.shape[0]
    same = _colour(RGB.clone(), torch.ones(n), torch.zeros(n))
    assert torch.allclose(same, RGB, atol=1e-5)
    grey = _colour(RGB.clone(), torch.zeros(n), torch.zeros(n))
    luma = (RGB * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    assert torch.allclose(grey, luma.expand_as(grey), atol=1e-5)


def test_colour_jitter_on_one_channel_data_is_a_clear_error():
    with pytest.raises(ValueError, match="saturation/hue need RGB images"):
        BatchTransform([0.5], [0.25], augment=AugmentSpec(hue=0.1))
    BatchTransform([0.5] * 3, [0.25] * 3, augment=AugmentSpec(hue=0.1))  # RGB is fine


def test_multiscale_resizes_each_batch_to_a_listed_size_drawn_per_batch():
    spec = resolve_spec("none", {"multiscale": [12, 16, 24]})
    assert spec.multiscale == (12, 16, 24) and spec.active
    assert spec.describe() == "multiscale 12/16/24"
    sizes = {_aug(spec, seed).shape[-1] for seed in range(20)}
    assert sizes == {12, 16, 24}
    for seed in range(3):
        assert torch.equal(_aug(spec, seed), _aug(spec, seed))  # seeded
    out = _aug(AugmentSpec(multiscale=(24,)))
    assert out.shape == (6, 1, 24, 24) and abs(out.mean() - X.mean()) < 0.02
    with pytest.raises(ValueError):
        TrainParams(aug={"multiscale": [4]})
    with pytest.raises(ValueError):
        TrainParams(aug={"multiscale": []})


def test_multiscale_sizes_are_probed_on_the_model_before_training():
    from medclass.models import create_model
    from medclass.train.loop import check_input_sizes

    cnn = create_model("simple_cnn_tiny", num_classes=3, in_chans=1)
    cnn.train()
    check_input_sizes(cnn, (12, 20), 1, torch.device("cpu"))
    assert cnn.training  # the mode is restored

    class Fixed(torch.nn.Module):
        def forward(self, x):
            assert x.shape[-1] == 16, "input size must be 16"
            return x.mean((2, 3))

    with pytest.raises(ValueError, match="cannot take 20 px inputs"):
        check_input_sizes(Fixed(), (16, 20), 1, torch.device("cpu"))


@pytest.mark.parametrize(("policy", "public"), [("randaugment", "RandAugment"),
                                                ("trivialaugment", "TrivialAugmentWide")])
def test_policy_op_table_reproduces_torchvisions_public_transform(policy, public):
    """Our per-sample table and ops give torchvision's ``v2.RandAugment(num_ops=1)`` /
    ``v2.TrivialAugmentWide`` result for every operation: same op order, magnitude range and
    sign (torchvision draws op, then bin for TrivialAugment, then sign from the global RNG)."""
    from torchvision.transforms import v2

    from medclass.data.policies import NUM_BINS, OPS, apply_op

    table = list(OPS[policy].items())
    assert len(table) == 14
    x = torch.randint(0, 256, (2, 3, 20, 24), dtype=torch.uint8,
                      generator=torch.Generator().manual_seed(0))
    tv = (v2.RandAugment(num_ops=1, magnitude=9) if policy == "randaugment"
          else v2.TrivialAugmentWide())
    seen = set()
    for seed in range(300):
        torch.manual_seed(seed)
        name, (magnitudes_fn, signed) = table[int(torch.randint(len(table), ()))]
        magnitudes = magnitudes_fn(NUM_BINS, 20, 24)
        m = 0.0
        if magnitudes is not None:
            b = 9 if policy == "randaugment" else int(torch.randint(NUM_BINS, ()))
            m = float(magnitudes[b])
            if signed and torch.rand(()) <= 0.5:
                m = -m
        torch.manual_seed(seed)
        assert torch.equal(apply_op(x, name, m), tv(x)), (seed, name, m)
        seen.add(name)
        if len(seen) == len(table):
            break
    assert len(seen) == len(table)
