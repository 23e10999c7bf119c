"""Paired statistics of the text-guidance study on constructed differences."""

import numpy as np
import pytest

from vqfast.experiments.stats import bootstrap_ci, compare, mean_ci, paired_tests


def test_paired_tests_count_and_test_the_differences():
    t = paired_tests([0.1, 0.2, 0.05, 0.3, 0.1])
    assert (t["wins"], t["losses"], t["ties"]) == (5, 0, 0)
    assert t["sign_p"] == pytest.approx(2 / 32) and t["wilcoxon_p"] == pytest.approx(2 / 32)
    assert paired_tests([0.0, 0.0]) == {"wilcoxon_p": 1.0, "sign_p": 1.0, "wins": 0,
                                        "losses": 0, "ties": 2}
    assert paired_tests([0.1, -0.1, 0.0])["ties"] == 1


def test_bootstrap_interval_covers_the_mean_and_stratifies():
    rng = np.random.default_rng(0)
    d = rng.normal(0.05, 0.01, size=20)
    lo, hi = bootstrap_ci([d])
    assert lo < d.mean() < hi and lo > 0
    # Pooled over groups: the mean of group means, each group weighed equally.
    lo, hi = bootstrap_ci([np.full(5, 1.0), np.full(50, 0.0)])
    assert lo == pytest.approx(0.5) and hi == pytest.approx(0.5)
    assert np.isnan(bootstrap_ci([])[0])
    m, lo, hi = mean_ci([0.5, float("nan"), 0.7])
    assert m == pytest.approx(0.6) and lo <= m <= hi


def test_compare_says_which_differences_are_distinguishable():
    same_way = [(0.9 + 0.01 * i, 0.8) for i in range(5)]
    mixed = [(0.8, 0.8), (0.85, 0.8), (0.75, 0.8), (0.8, 0.81), (0.82, 0.8)]
    out = compare({"A": same_way, "B": mixed})
    assert out["A"]["distinguishable"] and not out["B"]["distinguishable"]
    assert out["A"]["mean_diff"] == pytest.approx(0.12)
    assert out["pooled"]["n"] == 10
    assert out["pooled"]["mean_diff"] == pytest.approx((0.12 + 0.002) / 2)
    # Too few seeds: never distinguishable per dataset, whatever the interval says.
    assert not compare({"A": same_way[:3]})["A"]["distinguishable"]
    # Ten same-way pairs pooled: Wilcoxon p < 0.05.
    assert compare({"A": same_way, "C": same_way})["pooled"]["distinguishable"]
