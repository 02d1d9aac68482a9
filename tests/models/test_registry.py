"""Registry and the timm-style interface shared by every backbone."""

import pytest
import torch

from medclass.errors import MedclassError
from medclass.models import create_model, head_and_backbone_params, list_models

MODELS = [*list_models(), "timm/resnet18"]


def test_registry_lists_our_backbones():
    assert "simple_cnn" in list_models()


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("in_chans", [1, 3])
def test_interface_shapes_and_backward(name, in_chans):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, in_chans=in_chans)
    x = torch.randn(2, in_chans, 32, 32)
    out = model(x)
    assert out.shape == (2, 3)
    assert torch.isfinite(out).all()
    feats = model.forward_features(x)
    pooled = model.forward_head(feats, pre_logits=True)
    assert pooled.shape[0] == 2 and pooled.ndim == 2
    assert torch.allclose(model.forward_head(feats), out, atol=1e-5)
    out.sum().backward()
    head, backbone = head_and_backbone_params(model)
    assert head and backbone
    assert all(p.grad is not None for p in head)
    model.reset_classifier(5)
    assert model(x).shape == (2, 5)
    assert model.get_classifier().out_features == 5


def test_head_params_are_exactly_the_classifier():
    model = create_model("simple_cnn", num_classes=4, in_chans=1)
    head, backbone = head_and_backbone_params(model)
    assert {id(p) for p in head} == {id(p) for p in model.get_classifier().parameters()}
    assert len(head) + len(backbone) == len(list(model.parameters()))


def test_unknown_model_kwargs_is_a_clear_error():
    with pytest.raises(MedclassError, match="model_kwargs"):
        create_model("simple_cnn", num_classes=2, bogus=3)


def test_scratch_model_refuses_pretrained():
    with pytest.raises(MedclassError, match="no pretrained weights"):
        create_model("simple_cnn", num_classes=2, pretrained="hub")


def test_timm_pretrained_from_local_file(tmp_path):
    """Offline path: weights from a local file land in the model (head excluded)."""
    src = create_model("timm/resnet18", num_classes=1000, in_chans=3)
    path = tmp_path / "r18.pth"
    torch.save(src.state_dict(), path)
    model = create_model("timm/resnet18", num_classes=3, in_chans=3, pretrained=str(path))
    assert torch.equal(model.conv1.weight, src.conv1.weight)
    assert model.get_classifier().out_features == 3


def test_timm_pretrained_missing_file_is_clear(tmp_path):
    with pytest.raises(MedclassError, match="not found"):
        create_model("timm/resnet18", num_classes=3, pretrained=str(tmp_path / "x.pth"))
