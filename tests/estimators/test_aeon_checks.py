"""aeon's own estimator test suite on both estimators (tiny model, two pre-training steps)."""

from aeon.testing.estimator_checking import parametrize_with_checks

from vqfast.estimators import VQShapeClassifier, VQShapeTransformer


@parametrize_with_checks([VQShapeTransformer, VQShapeClassifier])
def test_aeon_estimator_checks(check):
    check()
