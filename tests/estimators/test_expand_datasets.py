"""vqfast.data.expand_datasets: what train.py --dataset all / --exclude and the accuracy benchmark
pre-train on."""

import pytest

from vqfast.data import NOT_IN_ALL, DataError, available_datasets, expand_datasets


def test_all_is_every_shipped_classification_dataset_but_the_fixture():
    every = expand_datasets(["all"])
    assert every == [n for n in available_datasets() if n not in NOT_IN_ALL]
    assert {"BasicMotions", "JapaneseVowels", "GunPoint", "PickupGestureWiimoteZ"} <= set(every)
    assert "UnitTest" not in every and "UnitTest" in available_datasets()


def test_names_and_paths_kept_in_order_without_duplicates():
    assert expand_datasets(["GunPoint", "ALL", "gunpoint", "data/x.npz"])[:2] == ["GunPoint",
                                                                                  "ACSF1"]
    assert expand_datasets(["all", "data/x.npz"], exclude=["x", "basicmotions"]) == [
        n for n in expand_datasets(["all"]) if n != "BasicMotions"]


@pytest.mark.parametrize("names, exclude, match", [
    (["all"], ["GunPont"], r"cannot exclude 'GunPont'.*Did you mean \['GunPoint'\]"),
    (["BasicMotions"], ["BasicMotions"], "leaves none of the datasets"),
])
def test_bad_excludes(names, exclude, match):
    with pytest.raises(DataError, match=match):
        expand_datasets(names, exclude)


def test_a_single_string_is_refused():
    with pytest.raises(TypeError, match="lists of names"):
        expand_datasets("all")
