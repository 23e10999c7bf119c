"""The pre-training pool: every channel of every sample of several datasets as one univariate
series, optionally balanced across datasets as the authors do."""

from __future__ import annotations

import torch

from vqfast.data.cleaning import SPLITS, DataError
from vqfast.data.datasets import SeriesData


def pretraining_series(
    datasets: list[SeriesData], split: str = "train", balance: bool = False, seed: int = 0,
    return_source: bool = False,
):
    """The univariate ``(M, length)`` pretraining pool of several datasets.

    Every channel of every sample of every dataset's ``split`` is one row. With
    ``balance=True`` (the authors' balancing) every dataset is up-sampled to the size of the
    largest, counted in univariate series: its series are all kept once, then the missing
    number is drawn from them with replacement (seeded by ``seed``). Rows come dataset by
    dataset, originals first; shuffle them when batching. With ``return_source=True`` also
    returns ``(M, 3)`` int64 rows ``(dataset index, sample index, channel)``.
    """
    where = "pretraining_series"
    if isinstance(datasets, SeriesData):
        datasets = [datasets]
    datasets = list(datasets)
    if not datasets:
        raise DataError(f"{where}: no datasets given; pass a list of SeriesData from load_dataset")
    for i, d in enumerate(datasets):
        if not isinstance(d, SeriesData):
            raise TypeError(f"{where}: datasets[{i}] is a {type(d).__name__}, not a SeriesData "
                            "(load it with vqfast.data.load_dataset)")
    if split not in SPLITS:
        raise ValueError(f"{where}: split must be one of {SPLITS}, got {split!r}")
    lengths = {d.name: d.length for d in datasets}
    if len(set(lengths.values())) != 1:
        raise DataError(f"{where}: the datasets have different lengths {lengths}; load them all "
                        "with the same length=")
    pools = [d.univariate(split) for d in datasets]
    # Where every row comes from: (dataset, sample, channel); rows are sample-major.
    sources = []
    for i, d in enumerate(datasets):
        n = len(pools[i]) // d.channels
        sample = torch.arange(n).repeat_interleave(d.channels)
        channel = torch.arange(d.channels).repeat(n)
        sources.append(torch.stack([torch.full_like(sample, i), sample, channel], dim=1))
    if balance:
        target = max(len(p) for p in pools)
        g = torch.Generator().manual_seed(int(seed))
        for i, p in enumerate(pools):
            extra = target - len(p)
            if extra > 0:
                pick = torch.randint(len(p), (extra,), generator=g)
                pools[i] = torch.cat([p, p[pick]])
                sources[i] = torch.cat([sources[i], sources[i][pick]])
    if return_source:
        return torch.cat(pools), torch.cat(sources)
    return torch.cat(pools)
