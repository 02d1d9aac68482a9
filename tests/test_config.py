"""params.yaml validation: defaults load, and bad input fails with one line naming the key."""

from pathlib import Path

import pytest
import yaml

from medclass.config import Params, load_params, parse_params
from medclass.errors import MedclassError

REPO = Path(__file__).resolve().parents[1]


def test_repo_params_yaml_is_valid():
    params = load_params(REPO / "params.yaml")
    assert params.model
    assert params.data.source == "synthetic"


def test_repo_params_yaml_lists_every_default_key():
    """params.yaml is the documentation of every knob: it must carry the full schema."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())

    def keys(d, prefix=""):
        out = set()
        for k, v in d.items():
            out.add(prefix + k)
            if isinstance(v, dict) and k != "model_kwargs":
                out |= keys(v, prefix + k + ".")
        return out

    assert keys(Params().model_dump()) == keys(raw)


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"finetune": {"lr": -1.0}}, "finetune.lr"),
        ({"finetune": {"lrr": 0.1}}, "finetune.lrr: unknown key"),
        ({"train": {"batch_size": "big"}}, "train.batch_size"),
        ({"split": {"val_fraction": 0.5, "test_fraction": 0.5}}, "split"),
        ({"data": {"source": "ftp"}}, "data.source"),
        ({"model": "resnet_mishh"}, "unknown backbone"),
        ({"model": "timm/resnet1800"}, "unknown timm backbone"),
        ({"evaluate": {"mc_dropout_passes": 1}}, "evaluate: mc_dropout_passes: use 0 (off)"),
        ({"finetune": {"lr": 0}}, "finetune.lr: Input should be greater than 0 (got 0)"),
        ({"head": {"lr": -0.001}}, "head.lr: Input should be greater than 0 (got -0.001)"),
        ({"export": {"formats": ["onnx", "keras"]}},
         "export.formats: unknown format 'keras'; use all or a list of: pytorch, torchscript, "
         "onnx, tflite, coreml, tensorrt"),
        ({"export": {"formats": ["onxx"]}}, "unknown format 'onxx'; did you mean onnx?"),
        ({"export": {"formats": "onnx"}}, "export.formats: a single format must be a list: "
                                          "[onnx] (or all)"),
        ({"export": {"formats": "everything"}}, "unknown format 'everything'; use all or a list"),
        ({"data": {"image_size": 8}, "model": "deit"},
         "data.image_size: 8 px is below deit's minimum of 16 px; set data.image_size >= 16"),
        ({"data": {"image_size": 16}, "model": "timm/resnet18"},
         "data.image_size: 16 px is below timm/resnet18's minimum of 32 px"),
        ({"evaluate": {"embedding": "umap"}}, "evaluate.embedding"),
        ({"evaluate": {"ci": 1.0}}, "evaluate.ci"),
    ],
)
def test_bad_params_give_one_line_naming_the_key(override, needle):
    with pytest.raises(MedclassError) as err:
        parse_params(override)
    msg = str(err.value)
    assert needle in msg
    assert "\n" not in msg


def test_image_size_at_the_backbone_minimum_is_accepted():
    assert parse_params({"model": "deit", "data": {"image_size": 16}}).data.image_size == 16
    assert parse_params({"model": "simple_cnn", "data": {"image_size": 8}}).model == "simple_cnn"


def test_unknown_model_suggests_close_matches():
    with pytest.raises(MedclassError, match="did you mean simple_cnn"):
        parse_params({"model": "simple_cnnn"})


def test_malformed_yaml_is_reported_with_line(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("model: simple_cnn\ndata: [unclosed\n")
    with pytest.raises(MedclassError, match="malformed YAML"):
        load_params(p)


def test_missing_params_file(tmp_path):
    with pytest.raises(MedclassError, match="not found"):
        load_params(tmp_path / "nope.yaml")
