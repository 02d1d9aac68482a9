"""External test sets (``evaluate.external``): params, ingest, scoring, the stage and the card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from medclass.config import load_params, parse_params
from medclass.config.schema import ExternalSet
from medclass.data.external import list_external, load_external
from medclass.errors import MedclassError
from medclass.evaluate.bootstrap import bootstrap_ci
from medclass.evaluate.calibration import apply_temperature, calibration_scores, softmax
from medclass.evaluate.external import difference, score_external
from medclass.evaluate.metrics import classification_metrics
from medclass.report.model_card import render_report

MODEL_CLASSES = ["normal", "nodule", "effusion"]
SHADE = {"normal": 20, "nodule": 120, "effusion": 220}  # one grey level per class


def _png(path: Path, value: int, size: int = 12, rgb: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size, size, 3) if rgb else (size, size)
    Image.fromarray(np.full(shape, value, dtype=np.uint8)).save(path)


def _tree(root: Path, per_class: dict[str, int]) -> None:
    for name, n in per_class.items():
        for i in range(n):
            _png(root / name / f"{name}_{i}.png", SHADE.get(name, 60))


def _one_line_error(raw: dict) -> str:
    with pytest.raises(MedclassError) as err:
        parse_params(raw)
    text = str(err.value)
    assert "\n" not in text
    return text


def _ext(*sets: dict, **data) -> dict:
    return {"data": data, "evaluate": {"external": list(sets)}} if data else \
        {"evaluate": {"external": list(sets)}}


# --- params -------------------------------------------------------------------------------

def test_params_accept_sets_inside_data_external() -> None:
    p = parse_params(_ext({"name": "site_b", "path": "data/external/site_b"},
                          {"name": "site_c", "path": "./data/external/c", "source": "csv",
                           "csv": {"file": "meta/labels.csv", "label_column": "dx"}}))
    assert [s.name for s in p.evaluate.external] == ["site_b", "site_c"]
    assert p.evaluate.external[1].csv.label_column == "dx"
    assert parse_params({}).evaluate.external == []


def test_params_duplicate_names() -> None:
    text = _one_line_error(_ext({"name": "site_b", "path": "data/external/a"},
                                {"name": "site_b", "path": "data/external/b"}))
    assert "'site_b' twice" in text


@pytest.mark.parametrize("path", ["data/other/site_b", "/abs/data/external/site_b",
                                  "data/external/../raw", "data/external", "site_b"])
def test_params_path_outside_data_external(path: str) -> None:
    text = _one_line_error(_ext({"name": "site_b", "path": path}))
    assert "evaluate.external.0.path" in text and "inside data/external/" in text
    assert "DVC deps track data/external" in text


@pytest.mark.parametrize("entry, needle", [
    ({"name": "site b", "path": "data/external/b"}, "not identifier-like"),
    ({"name": "b", "path": "data/external/b", "csv": {"file": "x.csv"}}, "source: folder"),
    ({"name": "b", "path": "data/external/b", "source": "csv",
      "csv": {"split_column": "fold"}}, "remove split_column"),
    ({"name": "b", "path": "data/external/b", "source": "csv",
      "csv": {"file": "../labels.csv"}}, "csv.file must be a relative path"),
    ({"name": "b", "path": "data/external/b", "source": "dicomdir"}, "source"),
])
def test_params_bad_entries(entry: dict, needle: str) -> None:
    assert needle in _one_line_error(_ext(entry))


def test_params_set_overlapping_the_training_folder() -> None:
    entry = {"name": "site_b", "path": "data/external/site_b"}
    text = _one_line_error(_ext(entry, source="folder", path="data/external"))
    assert "overlaps data.path 'data/external'" in text and "data/external/train" in text
    parse_params(_ext(entry, source="folder", path="data/external/train"))
    parse_params(_ext(entry))  # synthetic data never reads data.path


# --- ingest -------------------------------------------------------------------------------

@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _spec(path: str = "data/external/site_b", **kw) -> ExternalSet:
    return ExternalSet(name=path.rsplit("/", 1)[-1], path=path, **kw)


def test_folder_set_labels_follow_the_model_order(in_tmp: Path) -> None:
    root = in_tmp / "data/external/site_b"
    _tree(root, {"nodule": 3, "normal": 2})  # sorted folder order differs from the model's
    _png(root / "nodule" / "deep" / "rgb.png", SHADE["nodule"], rgb=True)
    (root / "normal" / "broken.png").write_bytes(b"not a png")
    (root / "notes.txt").write_text("x")
    data = load_external(_spec(), MODEL_CLASSES, 8, 1, in_tmp / "work")
    assert data.images.shape == (6, 1, 8, 8) and data.images.dtype == np.uint8
    assert data.labels.dtype == np.int64
    assert sorted(data.labels.tolist()) == [0, 0, 1, 1, 1, 1]
    for img, label in zip(data.images, data.labels, strict=True):  # pixels match their label
        assert int(img.mean()) == SHADE[MODEL_CLASSES[label]]
    assert data.classes_present == ["normal", "nodule"]
    assert data.classes_absent == ["effusion"]
    assert data.n_excluded == 1 and data.excluded[0]["path"] == "normal/broken.png"
    assert data.n_ignored == 1
    s = data.summary()
    assert s["n_images"] == 6 and s["path"] == "data/external/site_b" and s["n_excluded"] == 1


def test_rgb_decode_at_three_channels(in_tmp: Path) -> None:
    _tree(in_tmp / "data/external/site_b", {"normal": 1, "effusion": 1})
    data = load_external(_spec(), MODEL_CLASSES, 16, 3, in_tmp / "work")
    assert data.images.shape == (2, 3, 16, 16)
    assert data.labels.tolist() == [2, 0]  # effusion/ sorts first


def test_unknown_class_is_refused(in_tmp: Path) -> None:
    _tree(in_tmp / "data/external/site_b", {"normal": 1, "opacity": 1})
    with pytest.raises(MedclassError) as err:
        list_external(_spec(), MODEL_CLASSES, [])
    text = str(err.value)
    assert "\n" not in text and "'opacity'" in text and "'site_b'" in text
    assert str(MODEL_CLASSES) in text


@pytest.mark.parametrize("make, needle", [
    (lambda r: [_png(r / s / "normal" / "0.png", 20) for s in ("train", "test")],
     r"split folders \['test', 'train'\]"),
    (lambda r: None, "folder not found"),
    (lambda r: (r / "normal").mkdir(parents=True), "no readable images"),
])
def test_bad_trees_are_refused(in_tmp: Path, make, needle: str) -> None:
    make(in_tmp / "data/external/site_b")
    with pytest.raises(MedclassError, match=needle) as err:
        load_external(_spec(), MODEL_CLASSES, 8, 1, in_tmp / "work")
    assert "\n" not in str(err.value) and "site_b" in str(err.value)


def _csv_set(root: Path, lines: list[str]) -> None:
    for i, value in enumerate((20, 120, 220, 20)):
        _png(root / "img" / f"{i}.png", value)
    (root / "labels.csv").write_text("image,label\n" + "\n".join(lines) + "\n")


def test_csv_set_by_name(in_tmp: Path) -> None:
    root = in_tmp / "data/external/site_c"
    _csv_set(root, ["img/0.png,normal", "img/1.png,nodule", "img/2.png,effusion",
                    "img/3.png,normal", "img/9.png,normal"])
    spec = _spec("data/external/site_c", source="csv")
    data = load_external(spec, MODEL_CLASSES, 8, 1, in_tmp / "work")
    assert data.labels.tolist() == [0, 1, 2, 0]
    assert data.summary()["csv"]["missing_files"] == 1 and data.classes_absent == []


def test_csv_set_integer_labels_index_the_model_classes(in_tmp: Path) -> None:
    root = in_tmp / "data/external/site_c"
    _csv_set(root, ["img/0.png,0", "img/1.png,1", "img/2.png,2", "img/3.png,0"])
    data = load_external(_spec("data/external/site_c", source="csv"), MODEL_CLASSES, 8, 1,
                         in_tmp / "work")
    assert data.labels.tolist() == [0, 1, 2, 0]
    for img, label in zip(data.images, data.labels, strict=True):
        assert int(img.mean()) == SHADE[MODEL_CLASSES[label]]


def test_csv_set_errors_name_the_set_and_its_keys(in_tmp: Path) -> None:
    root = in_tmp / "data/external/site_c"
    _csv_set(root, ["img/0.png,0", "img/1.png,7"])
    with pytest.raises(MedclassError, match=r"'site_c'.*label 7 is not a class index"):
        list_external(_spec("data/external/site_c", source="csv"), MODEL_CLASSES, [])
    spec = _spec("data/external/site_c", source="csv", csv={"label_column": "dx"})
    with pytest.raises(MedclassError) as err:
        list_external(spec, MODEL_CLASSES, [])
    assert "'site_c'" in str(err.value) and "set csv.label_column" in str(err.value)
    assert "data.csv" not in str(err.value)


# --- scoring ------------------------------------------------------------------------------

def test_scores_match_classification_metrics() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    logits = rng.normal(size=(60, 3)) + 1.5 * np.eye(3)[labels]
    m = score_external(logits, labels, MODEL_CLASSES, 1.7, n_bins=10, resamples=200,
                       level=0.9, seed=3)
    ref = classification_metrics(softmax(logits), labels, MODEL_CLASSES)
    for key in ("accuracy", "balanced_accuracy", "f1_macro", "auc", "loss", "n", "per_class",
                "confusion_matrix"):
        assert m[key] == ref[key], key
    assert m["calibration"]["before"] == calibration_scores(logits, labels, 10)
    assert m["calibration"]["after"] == calibration_scores(apply_temperature(logits, 1.7),
                                                           labels, 10)
    assert m["calibration"]["after"]["nll"] != m["calibration"]["before"]["nll"]
    cis = bootstrap_ci(softmax(logits), labels, n_resamples=200, confidence=0.9, seed=3)
    assert m["ci"]["level"] == 0.9 and m["ci"]["resamples"] == 200
    for key in ("accuracy", "f1_macro", "auc"):
        assert m["ci"][key] == {"low": cis[key]["low"], "high": cis[key]["high"]}
    assert "ci" not in score_external(logits, labels, MODEL_CLASSES, 1.0, n_bins=10,
                                      resamples=0, level=0.9, seed=3)


def test_absent_class_and_difference() -> None:
    labels = np.array([0, 0, 1, 1])
    logits = np.array([[2.0, 0, 0], [0, 2.0, 0], [0, 2.0, 0], [0, 0, 2.0]])
    m = score_external(logits, labels, MODEL_CLASSES, 1.0, n_bins=5, resamples=20, level=0.95,
                       seed=0)
    assert m["accuracy"] == 0.5 and m["auc"] is None  # no effusion image: AUC undefined
    assert m["ci"]["auc"] == {"low": None, "high": None}
    diff = difference(m, {"accuracy": 0.75, "f1_macro": 0.5, "auc": 0.9})
    assert diff["accuracy"] == pytest.approx(-0.25) and diff["auc"] is None
    assert diff["f1_macro"] == pytest.approx(m["f1_macro"] - 0.5)


# --- the model card -----------------------------------------------------------------------

def _card(metrics: dict) -> str:
    meta = {"model": "simple_cnn", "classes": MODEL_CLASSES, "image_size": 16, "channels": 1,
            "mean": [0.5], "std": [0.2], "params": {}}
    cal = {"temperature": 1.0, "fitted_on": "val", "n_bins": 5,
           "before": dict.fromkeys(("ece", "mce", "brier", "nll"), 0.1),
           "after": dict.fromkeys(("ece", "mce", "brier", "nll"), 0.1)}
    base = {"accuracy": 0.9, "f1_macro": 0.8, "auc": 0.95, "n": 30, "calibration": cal,
            "uncertainty": {}, "ci": {"level": 0.95, "resamples": 10,
                                      "accuracy": {"low": 0.8, "high": 1.0}}}
    return render_report(meta, {}, {**base, **metrics}, {}, {}, n_params=1)


def test_card_lists_external_sets_next_to_the_test_split() -> None:
    ext = {"n_images": 12, "path": "data/external/<x>", "accuracy": 0.75, "f1_macro": 0.7,
           "auc": None, "n_excluded": 2, "classes_absent": ["effusion"],
           "ci": {"accuracy": {"low": 0.5, "high": 0.917}},
           "vs_test": {"accuracy": -0.15, "f1_macro": -0.1, "auc": None}}
    html = _card({"external": {"site_b": ext}})
    assert "External test sets" in html and "test split (internal)" in html
    assert "0.7500 [0.500, 0.917]" in html and "-0.1500" in html and "-0.1000" in html
    assert "2 unreadable file(s) excluded" in html and "no images of effusion" in html
    assert "data/external/&lt;x&gt;" in html
    assert "External test sets" not in _card({})


# --- the evaluate stage on a tiny project ---------------------------------------------------

def test_stage_scores_an_external_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      untrained_model) -> None:
    from medclass.data.synthetic import render
    from medclass.stages import evaluate, prepare, split

    ev = {"batch_size": 8, "bootstrap": 20, "gradcam_per_class": 0, "gallery": 0,
          "embedding": "none", "external": [{"name": "site_b", "path": "data/external/site_b"}]}
    tiny = {"model": "simple_cnn_tiny", "train": {"progress": False}, "evaluate": ev,
            "data": {"image_size": 16, "synthetic": {"classes": MODEL_CLASSES,
                                                     "images_per_class": 12, "size": 24}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny))
    monkeypatch.chdir(tmp_path)
    for ci, name in enumerate(MODEL_CLASSES[:2]):  # effusion absent from the set
        for j in range(3):
            img = render(name, ci, 20, 0.5, np.random.default_rng([7, ci, j]))
            out = tmp_path / f"data/external/site_b/{name}/{j}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(out)
    params = load_params()
    prepare.main(params)
    split.main(params)
    untrained_model(tmp_path)
    evaluate.main(params)
    m = json.loads((tmp_path / "metrics/test.json").read_text())
    site = m["external"]["site_b"]
    assert site["n_images"] == 6 and site["n_excluded"] == 0
    assert site["path"] == "data/external/site_b"
    assert set(site["classes_present"]) == {"normal", "nodule"} and site["auc"] is None
    assert site["classes_absent"] == ["effusion"]
    assert site["calibration"]["temperature"] == m["calibration"]["temperature"]
    assert site["vs_test"]["accuracy"] == pytest.approx(site["accuracy"] - m["accuracy"])
    assert sum(v["support"] for v in site["per_class"].values()) == 6
    assert "External test sets" in (tmp_path / "plots/report.html").read_text()
