"""VQShapeTransformer and VQShapeClassifier: pipelines and cross-validation, unequal lengths,
save/load, random_state, loading models, and errors for input they cannot take."""

import random

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline

from tests.estimators.conftest import TINY
from vqfast import SeriesError
from vqfast.estimators import VQShapeClassifier, VQShapeTransformer
from vqfast.estimators.classifier import _fit_scaler
from vqfast.evaluation.probe import scale

PROBE = {"probe_epochs": 20, "probe_folds": 2, "weight_decays": (0.0, 0.01), "dropouts": (0.0,)}


def test_cross_val_score_of_a_pipeline_on_basic_motions(basic_motions):
    X, y, _, _ = basic_motions
    pipe = make_pipeline(VQShapeTransformer(**TINY, random_state=0),
                         LogisticRegression(max_iter=200))
    scores = cross_val_score(pipe, X, y, cv=2)
    assert scores.shape == (2,) and np.all((scores >= 0) & (scores <= 1))
    scores = cross_val_score(VQShapeClassifier(**TINY, **PROBE, random_state=0), X, y, cv=2)
    assert scores.shape == (2,) and np.all((scores >= 0) & (scores <= 1))


def test_classifier_learns_an_easy_task_with_text_labels(frequencies):
    X, y, Xt, yt = frequencies
    clf = VQShapeClassifier(**TINY, **PROBE, features="token", random_state=0).fit(X, y)
    assert list(clf.classes_) == ["fast", "slow"]
    assert (clf.predict(Xt) == yt).mean() >= 0.75  # chance: 0.5
    proba = clf.predict_proba(Xt)
    assert proba.shape == (len(Xt), 2) and np.allclose(proba.sum(1), 1)
    assert clf.probe_selection_["selection"].startswith("grid point and epoch chosen by 2-fold")


def test_scaler_is_the_probes(basic_motions):
    x = torch.randn(12, 7) * torch.arange(7) + 3  # column 0 constant
    for kind in ("token", "histogram"):
        offset, divisor = _fit_scaler(x, kind)
        expected, _ = scale(x, x[:1], kind)
        assert torch.equal((x - offset) / divisor, expected)


def _unequal(rng, n, channels=2):
    return [rng.normal(size=(channels, int(rng.integers(15, 40)))) for _ in range(n)]


@pytest.mark.parametrize("how", ["pad", "resample"])
def test_unequal_lengths_each_sample_on_its_own(how):
    rng = np.random.default_rng(1)
    X = _unequal(rng, 10)
    tr = VQShapeTransformer(**TINY, how=how, random_state=0).fit(X)
    assert tr.longest_ == max(s.shape[1] for s in X) and tr.n_channels_ == 2
    together = tr.transform(X)
    assert together.shape == (10, 2 * 8)  # histograms: C * K codes
    assert together.sum(1).tolist() == [2 * 4] * 10  # every channel's 4 tokens counted
    alone = np.concatenate([tr.transform([s]) for s in X])
    np.testing.assert_array_equal(together, alone)
    longer = [rng.normal(size=(2, 60))]  # longer than any series seen in fit
    assert tr.transform(longer).shape == (1, 16)


def test_pad_means_padding_to_the_longest_series_of_fit():
    rng = np.random.default_rng(2)
    X = _unequal(rng, 6)
    tr = VQShapeTransformer(**TINY, features="token", random_state=0).fit(X)
    padded = [np.pad(s, ((0, 0), (0, tr.longest_ - s.shape[1]))) for s in X]
    np.testing.assert_array_equal(tr.transform(X), tr.transform(np.stack(padded)))


def test_save_load_round_trip(tmp_path, basic_motions):
    X, y, Xt, _ = basic_motions
    tr = VQShapeTransformer(**TINY, features="token", random_state=3).fit(X)
    tr.save_pretrained(tmp_path / "tr")
    assert sorted(p.name for p in (tmp_path / "tr").rglob("*") if p.is_file()) == [
        "config.json", "estimator.json", "model.safetensors"]
    back = VQShapeTransformer.from_pretrained(tmp_path / "tr")
    np.testing.assert_array_equal(back.transform(Xt), tr.transform(Xt))
    assert back.get_params() == tr.get_params() and back.pretraining_ == tr.pretraining_

    clf = VQShapeClassifier(**TINY, **PROBE, random_state=3).fit(X, y)
    clf.save_pretrained(tmp_path / "clf")
    back = VQShapeClassifier.from_pretrained(tmp_path / "clf")
    np.testing.assert_array_equal(back.predict_proba(Xt), clf.predict_proba(Xt))
    np.testing.assert_array_equal(back.predict(Xt), clf.predict(Xt))
    assert back.classes_.dtype == clf.classes_.dtype and back.get_params() == clf.get_params()
    with pytest.raises(ValueError, match="saved VQShapeClassifier; load it with that class"):
        VQShapeTransformer.from_pretrained(tmp_path / "clf")


def test_saving_replaces_an_earlier_save_and_never_touches_other_files(tmp_path, basic_motions):
    X, y, Xt, _ = basic_motions
    first = VQShapeTransformer(**TINY, random_state=0).fit(X)
    second = VQShapeTransformer(**TINY, random_state=1).fit(X)
    first.save_pretrained(tmp_path / "m")
    second.save_pretrained(tmp_path / "m")
    np.testing.assert_array_equal(VQShapeTransformer.from_pretrained(tmp_path / "m")
                                  .transform(Xt), second.transform(Xt))
    assert not np.array_equal(first.transform(Xt), second.transform(Xt))
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary folder left
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="did not write"):
        first.save_pretrained(tmp_path / "mine")
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_random_state(basic_motions):
    X, _, Xt, _ = basic_motions
    a = VQShapeTransformer(**TINY, features="token", random_state=5).fit(X)
    b = VQShapeTransformer(**TINY, features="token", random_state=5).fit(X)
    c = VQShapeTransformer(**TINY, features="token", random_state=6).fit(X)
    np.testing.assert_array_equal(a.transform(Xt), b.transform(Xt))
    assert not np.array_equal(a.transform(Xt), c.transform(Xt))
    random.seed(11)
    np.random.seed(11)
    torch.manual_seed(11)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(11)
    np.random.seed(11)
    torch.manual_seed(11)
    VQShapeTransformer(**TINY, random_state=5).fit(X)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_clone_and_params(basic_motions):
    X, _, _, _ = basic_motions
    tr = VQShapeTransformer(**TINY, random_state=0).fit(X)
    fresh = clone(tr)
    assert not fresh.is_fitted and fresh.get_params() == tr.get_params()
    assert not hasattr(fresh, "model_")
    tr.set_params(features="token")
    assert tr.features == "token"


def test_model_given_as_a_folder_a_run_or_a_checkpoint(tmp_path, basic_motions, ckpt_path):
    X, _, Xt, _ = basic_motions
    tr = VQShapeTransformer(**TINY, random_state=0).fit(X)
    expected = tr.transform(Xt)
    tr.save_pretrained(tmp_path / "est")
    tr.model_.save_pretrained(tmp_path / "plain")
    for folder in (tmp_path / "est", tmp_path / "plain"):  # a saved estimator, a saved model
        loaded = VQShapeTransformer(model=str(folder)).fit(X)
        assert loaded.pretraining_ is None
        np.testing.assert_array_equal(loaded.transform(Xt), expected)
    np.testing.assert_array_equal(VQShapeTransformer(model=tr.model_).fit(X).transform(Xt),
                                  expected)
    authors = VQShapeTransformer(model=ckpt_path).fit(X)
    assert authors.transform(Xt).shape == (len(Xt), 6 * authors.model_.num_code)
    with pytest.raises(FileNotFoundError, match="not a folder written by save_pretrained"):
        VQShapeTransformer(model=tmp_path / "nothing").fit(X)


@pytest.mark.parametrize("X, match", [
    (np.full((4, 1, 20), np.nan), r"samples \[0, 1, 2, 3\] contain NaN or Inf"),
    (np.zeros((4, 1, 2, 20)), r"must be \(n_cases, n_channels, n_timepoints\)"),
    (np.zeros((0, 1, 20)), "holds no series"),
    ([], "empty list"),
    ([np.zeros((1, 20)), np.array([[0.0, np.inf, 1.0]])], r"samples \[1\] contain NaN"),
])
def test_clear_errors_for_bad_input(X, match):
    y = np.array([0, 1] * 2)[:len(X)]
    for est in (VQShapeTransformer(**TINY), VQShapeClassifier(**TINY)):
        with pytest.raises(SeriesError, match=match):
            est.fit(X, y)


def test_clear_errors_for_bad_parameters_and_channels(basic_motions):
    X, _, _, _ = basic_motions
    with pytest.raises(ValueError, match="features must be one of"):
        VQShapeTransformer(**TINY, features="codes").fit(X)
    with pytest.raises(ValueError, match="unknown setting 'num_codes'"):
        VQShapeTransformer(max_steps=1, settings={"num_codes": 8}).fit(X)
    with pytest.raises(ValueError, match="max_steps must be a positive integer"):
        VQShapeTransformer(max_steps=0).fit(X)
    tr = VQShapeTransformer(**TINY, random_state=0).fit(X)
    with pytest.raises(ValueError, match="different number of channels"):  # aeon's check
        tr.transform(X[:, :2])
