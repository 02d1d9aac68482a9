"""kfold with image groups (duplicates / split.group_by): StratifiedGroupKFold folds."""

import csv

import numpy as np
import pytest

from medclass.data.groups import write_groups
from medclass.errors import MedclassError
from medclass.train.kfold import make_folds, trainval_groups

CLASSES = ["normal", "sick"]


def _patients(n_patients: int = 20, per: int = 3) -> tuple[np.ndarray, np.ndarray]:
    groups = np.repeat(np.arange(n_patients), per)
    labels = groups % 2  # each patient has one class
    order = np.random.default_rng(0).permutation(len(groups))
    return labels[order], groups[order]


@pytest.mark.parametrize("seed", range(6))
def test_group_folds_keep_each_patient_in_one_fold(seed):
    labels, groups = _patients()
    folds = make_folds(labels, 4, seed, CLASSES, groups=groups)
    assert len(folds) == 4
    fold_of = {}
    for i, (tr, va) in enumerate(folds):
        assert not set(groups[tr]) & set(groups[va])
        for g in set(groups[va].tolist()):
            assert fold_of.setdefault(g, i) == i
        assert set(labels[va]) == {0, 1}
    assert sorted(np.concatenate([va for _, va in folds])) == list(range(len(labels)))
    plain = make_folds(labels, 4, seed, CLASSES)  # group-blind folds split patients
    assert any(set(groups[tr]) & set(groups[va]) for tr, va in plain)


def test_singleton_groups_give_the_plain_stratified_folds():
    labels = np.arange(40) % 2
    a = make_folds(labels, 4, 3, CLASSES, groups=np.arange(40))
    b = make_folds(labels, 4, 3, CLASSES)
    assert all(np.array_equal(x[1], y[1]) for x, y in zip(a, b, strict=True))


def test_too_few_groups_for_the_folds_is_one_clear_line():
    labels = np.array([0] * 6 + [1] * 6)
    groups = np.array([0, 0, 0, 1, 1, 1, 2, 3, 4, 5, 6, 7])  # 'normal': 2 patients
    with pytest.raises(MedclassError) as err:
        make_folds(labels, 3, 0, CLASSES, groups=groups)
    assert str(err.value) == (
        "class 'normal' has 2 train+val image groups (duplicates / patient groups); "
        "kfold.folds=3 needs at least 3 — lower kfold.folds or add images")


def test_trainval_groups_follow_cache_order(tmp_path):
    rows = [("a/1.png", "train"), ("a/2.png", "train"), ("a/3.png", "val"), ("a/4.png", "test")]
    with (tmp_path / "manifest.csv").open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["path", "label", "class_name", "split"])
        writer.writerows([p, 0, "a", s] for p, s in rows)
    assert trainval_groups(tmp_path) is None  # an older split folder: no groups
    write_groups(tmp_path / "groups.csv", ["a/3.png", "a/1.png", "a/4.png", "a/2.png"],
                 np.array([7, 5, 9, 5]))
    assert trainval_groups(tmp_path).tolist() == [5, 5, 7]
    write_groups(tmp_path / "groups.csv", ["a/1.png"], np.array([1]))
    with pytest.raises(MedclassError, match="lacks 'a/2.png'.*dvc repro split"):
        trainval_groups(tmp_path)
