"""``medclass predict`` / ``medclass info``: formats agree, ensembles, outputs, bad files."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from medclass.cli import app
from medclass.data.cache import _decode
from medclass.export.predict import combine, discover, load_array, predict, softmax
from medclass.export.runtime import Runner


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    """PNGs (one in a subfolder, sizes ≠ the model's), a corrupt file, a hidden file."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(3)
    (root / "sub").mkdir()
    for i in range(5):
        arr = rng.integers(0, 90, size=(24 + 4 * i, 20 + 4 * i), dtype=np.uint8)
        arr[5:12, 3 + i:10 + i] = 240
        folder = root / "sub" if i == 4 else root
        Image.fromarray(arr, "L").save(folder / f"img_{i}.png")
    Image.fromarray(rng.integers(0, 255, (30, 30, 3), dtype=np.uint8), "RGB").save(
        root / "colour.jpg", quality=95)
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    (root / ".hidden.png").write_bytes(b"ignored")
    return root


def _invoke(*args: str):
    return CliRunner().invoke(app, ["predict", *args, "--no-progress"])


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _by_path(doc: dict) -> dict[str, dict]:
    return {Path(r["path"]).name: r for r in doc["results"]}


def test_discover_recurses_and_skips_hidden(image_dir):
    names = [p.name for p in discover([image_dir])]
    assert names == ["broken.png", "colour.jpg", "img_0.png", "img_1.png", "img_2.png",
                     "img_3.png", "img_4.png"]


@pytest.mark.parametrize(("mode", "channels"), [("L", 1), ("RGB", 3), ("RGB", 1), ("L", 3)])
def test_preprocessing_matches_the_split_cache(tmp_path, mode, channels):
    rng = np.random.default_rng(0)
    shape = (37, 29) if mode == "L" else (37, 29, 3)
    path = tmp_path / "x.png"
    Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(path)
    assert np.array_equal(load_array(path, 16, channels), _decode(path, 16, channels))


def _fake_runner(logits: np.ndarray, temperature: float = 1.0) -> Runner:
    meta = {"model": "fake", "classes": ["a", "b", "c"], "image_size": 8, "channels": 1,
            "mean": [0.5], "std": [0.25], "temperature": temperature}
    return Runner(Path("fake.onnx"), "onnx", meta, lambda x: np.tile(logits, (len(x), 1)))


def test_temperature_scales_probabilities(image_dir):
    logits = np.array([2.0, 0.5, -1.0], dtype=np.float32)
    files = sorted(image_dir.glob("img_*.png"))
    rows = predict([_fake_runner(logits, temperature=2.0)], files, progress=False)
    expected = softmax(logits[None], 2.0)[0]
    assert np.allclose(list(rows[0]["probabilities"].values()), expected)
    assert rows[0]["prediction"] == "a" and [t["class"] for t in rows[0]["top_k"]] == [
        "a", "b", "c"]


def test_vote_counts_models_and_breaks_ties_by_mean():
    p1 = np.array([[0.6, 0.3, 0.1], [0.5, 0.4, 0.1]])
    p2 = np.array([[0.1, 0.5, 0.4], [0.1, 0.2, 0.7]])
    p3 = np.array([[0.2, 0.7, 0.1], [0.3, 0.6, 0.1]])
    score, mean, votes = combine([p1, p2, p3], "vote")
    assert np.allclose(votes, [[1 / 3, 2 / 3, 0], [1 / 3, 1 / 3, 1 / 3]])
    assert np.allclose(mean, (p1 + p2 + p3) / 3)
    assert score.argmax(1).tolist() == [1, 1]  # row 2: three-way tie → highest mean (0.4)
    score, mean, votes = combine([p1, p2], "mean")
    assert votes is None and np.array_equal(score, mean)


def test_unreadable_files_do_not_stop_the_rest(image_dir, capsys):
    runner = _fake_runner(np.array([0.0, 1.0, 0.0], dtype=np.float32))
    rows = predict([runner], discover([image_dir]), batch_size=3, progress=False)
    bad = [r for r in rows if r["error"]]
    assert [Path(r["path"]).name for r in bad] == ["broken.png"]
    assert bad[0]["prediction"] is None and "corrupt" in bad[0]["error"]
    assert all(r["prediction"] == "b" for r in rows if not r["error"])
    assert "cannot read" in capsys.readouterr().err


def _cli_formats(exported) -> dict[str, Path]:
    out, report = exported("cnn")
    wanted = {"pytorch": None, "torchscript": None, "onnx": "onnxruntime",
              "tflite": "ai_edge_litert"}
    return {fmt: out / report["formats"][fmt]["file"] for fmt, mod in wanted.items()
            if mod is None or importlib.util.find_spec(mod) is not None}


def test_same_classes_from_every_format(exported, image_dir, tmp_path):
    models = _cli_formats(exported)
    if "onnx" not in models or "tflite" not in models:
        pytest.skip("onnx and tflite extras needed to compare .pt/.onnx/.tflite")
    docs = {}
    for fmt, model in models.items():
        out = tmp_path / f"{fmt}.json"
        result = _invoke(str(model), str(image_dir), "--output", str(out), "--top-k", "2")
        assert result.exit_code == 0, result.output
        assert "cannot read" in result.stderr and "broken.png" in result.stderr
        docs[fmt] = _by_path(_json(out))
    reference = docs["pytorch"]
    assert len(reference) == 7 and reference["broken.png"]["error"]
    for fmt, rows in docs.items():
        assert {k: r["prediction"] for k, r in rows.items()} == {
            k: r["prediction"] for k, r in reference.items()}, fmt
        for name, row in rows.items():
            if row["error"] is None:
                assert len(row["top_k"]) == 2
                assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
                assert np.allclose(list(row["probabilities"].values()),
                                   list(reference[name]["probabilities"].values()), atol=1e-5)


def test_ensembles_mean_and_vote(exported, helpers, image_dir, tmp_path):
    from medclass.io import save_checkpoint

    out, _ = exported("cnn")
    other = tmp_path / "other.pt"
    save_checkpoint(other, helpers.make_checkpoint("simple_cnn_tiny", 16, {}, seed=7))
    models = [str(out / "model.pt"), str(out / "model.ts"), str(other)]
    singles = []
    for i, m in enumerate(models):
        assert _invoke(m, str(image_dir), "-o", str(tmp_path / f"s{i}.json")).exit_code == 0
        singles.append(_by_path(_json(tmp_path / f"s{i}.json")))
    for mode in ("mean", "vote"):
        path = tmp_path / f"{mode}.json"
        result = _invoke(*models, str(image_dir), "--ensemble", mode, "-o", str(path))
        assert result.exit_code == 0, result.output
        doc = _json(path)
        assert doc["ensemble"] == mode and len(doc["models"]) == 3
        for name, row in _by_path(doc).items():
            if row["error"]:
                continue
            probs = np.mean([list(s[name]["probabilities"].values()) for s in singles], 0)
            assert np.allclose(list(row["probabilities"].values()), probs, atol=1e-6)
            if mode == "vote":
                tops = [s[name]["prediction"] for s in singles]
                assert row["votes"][row["prediction"]] == pytest.approx(
                    max(tops.count(c) for c in tops) / 3)
            else:
                assert row["prediction"] == helpers.CLASSES[int(np.argmax(probs))]


def test_csv_output_has_full_probability_vectors(exported, helpers, image_dir, tmp_path):
    out, _ = exported("cnn")
    path = tmp_path / "results.csv"
    assert _invoke(str(out / "model.pt"), str(image_dir), "-o", str(path)).exit_code == 0
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 7
    assert list(rows[0])[:5] == ["path", "prediction", "confidence", "top_k", "error"]
    good = [r for r in rows if not r["error"]]
    for r in good:
        assert sum(float(r[f"prob_{c}"]) for c in helpers.CLASSES) == pytest.approx(1.0)
        assert r["prediction"] in helpers.CLASSES
    assert [r for r in rows if r["error"]][0]["prob_normal"] == ""


def test_table_on_stdout_without_output(exported, image_dir):
    out, _ = exported("cnn")
    result = _invoke(str(out / "model.pt"), str(image_dir / "img_0.png"))
    assert result.exit_code == 0
    path, prediction, confidence = result.stdout.strip().split("\t")
    assert path.endswith("img_0.png") and prediction in ("normal", "nodule", "effusion")
    assert 0 < float(confidence) <= 1


def test_exit_nonzero_when_nothing_is_readable(exported, image_dir):
    out, _ = exported("cnn")
    result = _invoke(str(out / "model.pt"), str(image_dir / "broken.png"),
                     str(image_dir / "missing.png"))
    assert result.exit_code == 2
    assert "none of the 2 input file(s) could be read" in result.stderr


def test_usage_errors(exported, image_dir, tmp_path):
    out, _ = exported("cnn")
    assert "must be an exported model" in _invoke(str(image_dir)).stderr
    assert "no inputs given" in _invoke(str(out / "model.pt")).stderr
    bad = _invoke(str(out / "model.pt"), str(image_dir), "-o", str(tmp_path / "r.txt"))
    assert bad.exit_code == 2 and "use a .json or .csv" in bad.stderr


def test_info_prints_metadata(exported, helpers):
    out, _ = exported("cnn")
    for name, fmt in (("model.pt", "pytorch"), ("model.ts", "torchscript")):
        result = CliRunner().invoke(app, ["info", str(out / name)])
        assert result.exit_code == 0, result.output
        doc = json.loads(result.stdout)
        assert doc["format"] == fmt and doc["classes"] == helpers.CLASSES
        assert doc["mean"] == helpers.MEAN and doc["temperature"] == 1.0
    missing = CliRunner().invoke(app, ["info", str(out / "nope.onnx")])
    assert missing.exit_code == 2 and "not found" in missing.stderr


def test_tta_averages_logits_over_the_views(image_dir, tmp_path):
    """A runner whose logits read the left and right halves: flip TTA averages both."""
    meta = {"model": "fake", "classes": ["left", "right"], "image_size": 8, "channels": 1,
            "mean": [0.0], "std": [1.0], "temperature": 1.0}

    def halves(x: np.ndarray) -> np.ndarray:
        return np.stack([x[:, 0, :, :4].mean((1, 2)), x[:, 0, :, 4:].mean((1, 2))], 1)

    runner = Runner(Path("fake.onnx"), "onnx", meta, halves)
    files = sorted(image_dir.glob("img_*.png"))
    plain = predict([runner], files, progress=False)
    flip = predict([runner], files, progress=False, tta="flip")
    for p, f in zip(plain, flip, strict=True):
        assert f["probabilities"]["left"] == pytest.approx(0.5, abs=1e-6)  # symmetric now
        assert p["probabilities"]["left"] != pytest.approx(0.5, abs=1e-3)
    rot = predict([runner], files, progress=False, tta="flip_rot")
    assert rot[0]["probabilities"]["left"] == pytest.approx(0.5, abs=1e-6)


def test_cli_tta_option_reaches_the_header(exported, image_dir, tmp_path):
    model = _cli_formats(exported)["pytorch"]
    out = tmp_path / "tta.json"
    result = _invoke(str(model), str(image_dir), "--tta", "flip", "--output", str(out))
    assert result.exit_code == 0, result.output
    assert _json(out)["tta"] == "flip"
    bad = _invoke(str(model), str(image_dir), "--tta", "rot")
    assert bad.exit_code != 0
