"""Tests of vqfast.text.templates: label texts."""

import numpy as np
import pytest
import torch

from vqfast.text import DEFAULT_TEMPLATES, GENERIC_TEMPLATE, TextError, label_texts


def test_label_texts_mapping_and_string():
    classes = ["Standing", "Running", "walking", "badminton"]
    y = torch.tensor([0, 1, 2, 3, 1])
    got = label_texts(y, classes, DEFAULT_TEMPLATES["BasicMotions"])  # case-insensitive keys
    assert got == ["a person standing still", "a person running", "a person walking",
                   "a person playing badminton", "a person running"]
    assert label_texts([1, 0], ["a", "b"], "class {label} here") == ["class b here",
                                                                       "class a here"]
    assert label_texts(np.array([0]), ["x"]) == [GENERIC_TEMPLATE.replace("{label}", "x")]
    # only the classes present need an entry
    assert label_texts([0], classes, {"standing": "still"}) == ["still"]


def test_label_texts_errors():
    classes = ["standing", "running"]
    with pytest.raises(TextError) as e:
        label_texts([0, 1], classes, {"standing": "still", "walk": "walking"})
    assert "'running'" in str(e.value) and "['standing', 'walk']" in str(e.value)
    with pytest.raises(TextError, match="no '\\{label\\}'"):
        label_texts([0], classes, "a person moving")
    with pytest.raises(TextError, match="outside 0..1"):
        label_texts([0, 2], classes, "{label}")
    with pytest.raises(TypeError, match="integer class ids"):
        label_texts(np.array([0.5]), classes, "{label}")
    with pytest.raises(TextError, match="non-empty str"):
        label_texts([0], classes, {"standing": ""})
    with pytest.raises(TypeError, match="template must be"):
        label_texts([0], classes, 3)
