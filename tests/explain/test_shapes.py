import numpy as np
import pytest
import torch

from vqfast import VQShape
from vqfast.explain import distinct_codes
from vqfast.explain.figures import shape_gallery
from vqfast.explain.shapes import decode_codes


def planted_codebook(S=64, seed=0):
    """Three base shapes; codes 0-3 are copies of the first (rescaled, offset, noised),
    4-5 of the second, 6 the third."""
    rng = np.random.default_rng(seed)
    grid = np.linspace(0, 1, S)
    bases = [np.sin(2 * np.pi * grid), grid ** 2, np.exp(-((grid - 0.5) / 0.1) ** 2)]
    rows = []
    for base, copies in zip(bases, (4, 2, 1)):
        for _ in range(copies):
            rows.append(rng.uniform(0.5, 3) * base + rng.normal() + 0.01 * rng.normal(size=S))
    return torch.tensor(np.stack(rows), dtype=torch.float32), [[0, 1, 2, 3], [4, 5], [6]]


def test_planted_duplicates_are_merged_and_sorted_by_usage():
    shapes, groups = planted_codebook()
    usage = torch.tensor([1, 0, 0, 2, 10, 5, 0])
    d = distinct_codes(shapes, usage)
    assert [sorted(g.members) for g in d.groups] == [[4, 5], [0, 1, 2, 3], [6]]
    assert [g.tokens for g in d.groups] == [15, 3, 0]
    assert d.groups[0].share == pytest.approx(15 / 18)
    assert d.groups[0].representative == 4 and d.groups[1].representative == 3
    assert d.summary() == "7 codes, 4 used, 2 distinct shapes"
    assert list(d.group_of) == [1, 1, 1, 1, 0, 0, 2]
    assert len(d) == 3 and d.as_dict()["distinct_all_codes"] == 3


@pytest.mark.parametrize("metric", ["correlation", "rms",
                                    lambda a, b: float(np.abs(a - b).max())])
def test_threshold_zero_keeps_distinct_and_large_merges_all(metric):
    shapes, _ = planted_codebook()
    assert len(distinct_codes(shapes, threshold=0.0, metric=metric)) == 7
    assert len(distinct_codes(shapes, threshold=10.0, metric=metric)) == 1


def test_identical_codes_merge_at_zero_threshold():
    shapes, _ = planted_codebook()
    shapes = torch.cat([shapes, shapes[:1] * 4 + 2])  # same shape after z-scoring
    d = distinct_codes(shapes, threshold=0.0)
    assert len(d) == 7 and sorted(d.groups[0].members) == [0, 7]


def test_histograms_with_channels_side_by_side_count_per_code():
    shapes, _ = planted_codebook()
    hist = torch.zeros(2, 2 * 7)
    hist[0, 6] = 3       # channel 0, code 6
    hist[1, 7 + 6] = 2   # channel 1, code 6
    d = distinct_codes(shapes, hist)
    assert d.groups[0].members == [6] and d.groups[0].tokens == 5 and d.used == 1


def test_bad_inputs_are_named():
    shapes, _ = planted_codebook()
    with pytest.raises(ValueError, match="metric must be one of"):
        distinct_codes(shapes, metric="cosine-ish")
    with pytest.raises(ValueError, match="usage must be"):
        distinct_codes(shapes, torch.ones(5))
    with pytest.raises(ValueError, match="threshold"):
        distinct_codes(shapes, threshold=-1)
    with pytest.raises(ValueError, match="NaN"):
        distinct_codes(shapes * float("nan"))
    with pytest.raises(TypeError, match="VQShape"):
        decode_codes(object())


def test_model_codebook_and_gallery(tmp_path):
    model = VQShape(dim_embedding=16, num_enc_head=2, num_enc_layer=1, num_tokenizer_head=2,
                    num_tokenizer_layer=1, num_dec_head=2, num_dec_layer=1, num_token=4,
                    num_code=6, len_s=32).eval()
    shapes, _ = planted_codebook(S=32)
    d_model = distinct_codes(model, torch.arange(6))
    assert d_model.num_codes == 6 and d_model.used == 5
    assert decode_codes(model).shape == (6, 32)
    path = shape_gallery(distinct_codes(shapes, torch.tensor([1, 0, 0, 2, 10, 5, 0])),
                         tmp_path / "g.png")
    assert path.stat().st_size > 1000
