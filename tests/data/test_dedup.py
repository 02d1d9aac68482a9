"""Duplicates and leakage at split time: fingerprints, groups, group-aware split, report."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medclass.config import DataParams, Params, SplitParams, parse_params
from medclass.data.cache import build_cache, load_cached_split
from medclass.data.dedup import (
    Fingerprint,
    find_duplicates,
    fingerprint,
    hamming,
)
from medclass.data.groups import cross_split_groups, read_groups
from medclass.data.leakage import split_dataset
from medclass.data.raw_manifest import read_raw_manifest, source_root, write_raw_manifest
from medclass.data.sources import prepare_raw
from medclass.data.split import read_manifest, stratified_split
from medclass.errors import MedclassError

SPLITS = ("train", "val", "test")


def textured(seed: int, size: int = 32) -> Image.Image:
    """A smooth random gray image; different seeds give unrelated perceptual hashes."""
    small = np.random.default_rng(seed).integers(0, 256, (16, 16), dtype=np.uint8)
    return Image.fromarray(small, "L").resize((size, size), Image.Resampling.BILINEAR)


def jpeg_copy(img: Image.Image, quality: int = 90) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as im:
        return im.convert("L")


def brighter(img: Image.Image, delta: int = 8) -> Image.Image:
    arr = np.asarray(img, dtype=np.int16) + delta
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "L")


def write_raw(root: Path, images: dict[str, list[Image.Image]]) -> Path:
    """A class-folder tree ``<root>_src/<class>/img_XX.png`` ingested by prepare into ``root``
    (manifest paths ``<class>/img_XX.png``)."""
    src = root.with_name(f"{root.name}_src")
    for name, imgs in images.items():
        (src / name).mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(imgs):
            img.save(src / name / f"img_{i:02d}.png")
    prepare_raw(DataParams(source="folder", path=str(src), class_names=list(images)), 0, root)
    return root


def _print(img: Image.Image) -> Fingerprint:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return fingerprint(img, buf.getvalue())


def dup_dataset() -> dict[str, list[Image.Image]]:
    """Class 'a': 20 unrelated images then the family of img_00 (exact copy, JPEG q90 re-save,
    brightened); class 'b': 20 unrelated images."""
    a = [textured(i) for i in range(20)]
    a += [a[0].copy(), jpeg_copy(a[0]), brighter(a[0])]
    b = [textured(100 + i) for i in range(20)]
    return {"a": a, "b": b}


FAMILY = {"a/img_00.png", "a/img_20.png", "a/img_21.png", "a/img_22.png"}


def _params(seed: int = 0, **split) -> Params:
    return Params(seed=seed, data=DataParams(image_size=16), split=SplitParams(**split))


def test_fingerprints_find_exact_and_near_duplicates_but_not_unrelated() -> None:
    base = textured(1)
    imgs = [base, base.copy(), jpeg_copy(base), brighter(base), textured(2), textured(3)]
    prints = [_print(im) for im in imgs]
    assert prints[0].file_sha256 == prints[1].file_sha256
    assert prints[0].pixel_sha256 == prints[1].pixel_sha256
    assert prints[0].pixel_sha256 != prints[2].pixel_sha256  # not identical, only near
    dist = [hamming(prints[0].phash, p.phash) for p in prints]
    assert max(dist[2], dist[3]) <= 8 and min(dist[4], dist[5]) > 40
    dups = find_duplicates(prints, max_distance=8)
    assert len(set(dups.labels[:4].tolist())) == 1
    assert len(set(dups.labels.tolist())) == 3  # the family, and two unrelated singletons
    assert dups.n_near_pairs >= 2
    exact_only = find_duplicates(prints, max_distance=None)
    assert exact_only.labels[0] == exact_only.labels[1]
    assert len(set(exact_only.labels.tolist())) == 5 and exact_only.n_near_pairs == 0


def test_duplicates_stay_in_one_split_for_every_seed() -> None:
    imgs = [im for ims in dup_dataset().values() for im in ims]
    labels = np.array([0] * 23 + [1] * 20)
    groups = find_duplicates([_print(im) for im in imgs], max_distance=8).labels
    family = [0, 20, 21, 22]
    leaked_without = 0
    for seed in range(40):
        splits = stratified_split(labels, 0.1, 0.1, seed, ["a", "b"], groups=groups)
        assert len(set(splits[family].tolist())) == 1, seed
        for label in (0, 1):
            assert set(splits[labels == label].tolist()) == set(SPLITS)
        plain = stratified_split(labels, 0.1, 0.1, seed, ["a", "b"])
        leaked_without += len(set(plain[family].tolist())) > 1
    assert leaked_without > 0  # the plain split does leak this family for some seeds


def test_grouped_split_is_deterministic_and_close_to_the_fractions() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    groups = rng.integers(0, 120, 300)  # ~2.5 images a group, mixed classes
    a = stratified_split(labels, 0.1, 0.2, 5, ["x", "y", "z"], groups=groups)
    b = stratified_split(labels, 0.1, 0.2, 5, ["x", "y", "z"], groups=groups)
    c = stratified_split(labels, 0.1, 0.2, 6, ["x", "y", "z"], groups=groups)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert cross_split_groups(groups, a) == (0, 0)
    assert abs(np.mean(a == "val") - 0.1) < 0.04 and abs(np.mean(a == "test") - 0.2) < 0.04


def test_split_stage_report_manifest_groups_and_cache(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "raw", dup_dataset())
    for seed in (0, 1, 2):
        out = tmp_path / f"split{seed}"
        stats, report = split_dataset(raw, _params(seed), out)
        rows = read_manifest(out / "manifest.csv")
        split_of = {r.path: r.split for r in rows}
        assert len({split_of[p] for p in FAMILY}) == 1
        assert report["exact_duplicates"] == {"groups": 1, "images": 2}
        assert report["near_duplicates"]["groups"] == 1
        assert report["near_duplicates"]["images"] == 4
        assert report["n_groups"] == 43 - 3 and report["n_multi_image_groups"] == 1
        assert report["largest_group"] == 4 and report["groups_with_several_classes"] == 0
        assert report["cross_split_groups"] == {"groups": 0, "images": 0}
        assert report["leaks_prevented"]["groups"] in (0, 1)
        groups = read_groups(out / "groups.csv")
        assert len({groups[p] for p in FAMILY}) == 1 and len(set(groups.values())) == 40
        dups = json.loads((out / "duplicates.json").read_text())
        assert [(d["kind"], sorted(d["images"])) for d in dups] == [("near", sorted(FAMILY))]
        assert not (out / "cache" / ".decoded.npy").exists()
    # the one-decode cache holds exactly what decoding the manifest afresh gives
    ref = build_cache(source_root(raw), rows, 16, "auto", ["a", "b"], tmp_path / "ref")
    assert ref == stats
    for split in SPLITS:
        got, ref_x = load_cached_split(out / "cache", split), load_cached_split(tmp_path / "ref",
                                                                                 split)
        np.testing.assert_array_equal(got[0], ref_x[0])
        np.testing.assert_array_equal(got[1], ref_x[1])


def test_near_duplicates_off_keeps_only_exact_groups(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "raw", dup_dataset())
    _, report = split_dataset(raw, _params(near_duplicate_distance=None), tmp_path / "s")
    assert report["near_duplicates"]["groups"] == 0 and report["n_multi_image_groups"] == 1
    assert report["exact_duplicates"] == {"groups": 1, "images": 2}


def test_predefined_split_only_reports_duplicates(tmp_path: Path) -> None:
    raw = write_raw(tmp_path / "raw", dup_dataset())
    rows = read_raw_manifest(raw / "manifest.csv")
    official = {r.path: SPLITS[i % 3] for i, r in enumerate(sorted(rows, key=lambda r: r.path))}
    official["a/img_00.png"], official["a/img_20.png"] = "train", "test"  # an exact dup leaks
    write_raw_manifest(raw / "manifest.csv",
                       [dataclasses.replace(r, split=official[r.path]) for r in rows])
    _, report = split_dataset(raw, _params(), tmp_path / "s")
    rows = read_manifest(tmp_path / "s" / "manifest.csv")
    assert {r.path: r.split for r in rows} == official  # nothing moved
    assert report["predefined_split"] is True and report["leaks_prevented"] is None
    assert report["cross_split_groups"]["groups"] == 1
    assert report["cross_split_groups"]["images"] == 4


def test_class_made_of_copies_is_a_one_line_error(tmp_path: Path) -> None:
    one = textured(7)
    raw = write_raw(tmp_path / "raw", {"a": [textured(i) for i in range(10)],
                                       "b": [one.copy() for _ in range(5)]})
    with pytest.raises(MedclassError) as err:
        split_dataset(raw, _params(), tmp_path / "s")
    msg = str(err.value)
    assert "'b' has 1 image groups" in msg and "near_duplicate_distance" in msg
    assert "\n" not in msg


# ---------------------------------------------------------------- split.group_by


def make_folder_source(root: Path, patients: int = 12, per_patient: int = 3) -> dict[str, str]:
    """``root/<class>/p<k>_<j>.png`` (k even: 'normal', odd: 'sick') + metadata.csv; returns
    {source path: patient id}."""
    owners: dict[str, str] = {}
    for k in range(patients):
        cls = "normal" if k % 2 == 0 else "sick"
        (root / cls).mkdir(parents=True, exist_ok=True)
        for j in range(per_patient):
            rel = f"{cls}/p{k:02d}_{j}.png"
            textured(1000 + 10 * k + j).save(root / rel)
            owners[rel] = f"P{k:02d}"
    with (root / "metadata.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "patient_id", "site"])
        writer.writerows([p, pid, "x"] for p, pid in owners.items())
    return owners


def test_group_by_keeps_each_patient_in_one_split(tmp_path: Path) -> None:
    src = tmp_path / "src"
    owners = make_folder_source(src)
    raw = tmp_path / "raw"
    prepare_raw(DataParams(source="folder", path=str(src)), 0, raw)
    with (raw / "metadata.csv").open(newline="") as fh:
        meta = list(csv.DictReader(fh))
    assert {m["source_path"]: m["patient_id"] for m in meta} == owners
    assert all(m["path"].endswith(".png") and m["site"] == "x" for m in meta)
    patient = {m["path"]: m["patient_id"] for m in meta}
    for seed in range(8):
        out = tmp_path / f"s{seed}"
        _, report = split_dataset(raw, _params(seed, group_by="patient_id"), out)
        rows = read_manifest(out / "manifest.csv")
        by_patient: dict[str, set[str]] = {}
        for r in rows:
            by_patient.setdefault(patient[r.path], set()).add(r.split)
        assert all(len(s) == 1 for s in by_patient.values()), seed
        assert {r.split for r in rows if r.class_name == "sick"} == set(SPLITS)
        assert report["n_group_by_values"] == 12 and report["n_groups"] == 12


def test_group_by_errors(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_folder_source(src)
    raw = tmp_path / "raw"
    prepare_raw(DataParams(source="folder", path=str(src)), 0, raw)
    with pytest.raises(MedclassError, match="no column 'patient'.*patient_id"):
        split_dataset(raw, _params(group_by="patient"), tmp_path / "s")
    text = (raw / "metadata.csv").read_text().splitlines()
    text[1] = text[1].replace(",P00,", ",,")  # first image loses its patient
    (raw / "metadata.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(MedclassError) as err:
        split_dataset(raw, _params(group_by="patient_id"), tmp_path / "s")
    assert "1 images have no 'patient_id' value" in str(err.value)
    assert "'normal/p00_0.png'" in str(err.value) and "\n" not in str(err.value)
    (raw / "metadata.csv").unlink()
    with pytest.raises(MedclassError, match="metadata.csv does not exist"):
        split_dataset(raw, _params(group_by="patient_id"), tmp_path / "s")


def test_metadata_with_unknown_path_stops_prepare(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_folder_source(src)
    with (src / "metadata.csv").open("a") as fh:
        fh.write("normal/ghost.png,P99,x\n")
    with pytest.raises(MedclassError) as err:
        prepare_raw(DataParams(source="folder", path=str(src)), 0, tmp_path / "raw")
    msg = str(err.value)
    assert "metadata.csv line 38" in msg and "'normal/ghost.png'" in msg and "\n" not in msg
    (src / "metadata.csv").write_text("file,patient_id\nnormal/p00_0.png,P00\n")
    with pytest.raises(MedclassError, match="no 'path' column"):
        prepare_raw(DataParams(source="folder", path=str(src)), 0, tmp_path / "raw")


@pytest.mark.parametrize("raw, key", [
    ({"split": {"near_duplicate_distance": 65}}, "split.near_duplicate_distance"),
    ({"split": {"near_duplicate_distance": -1}}, "split.near_duplicate_distance"),
    ({"split": {"group_by": ""}}, "split.group_by"),
    ({"data": {"metadata": "../outside.csv"}}, "data"),
])
def test_new_params_are_validated(raw: dict, key: str) -> None:
    with pytest.raises(MedclassError, match=key):
        parse_params(raw)
