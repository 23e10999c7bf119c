"""Series too large for memory: a directory of ``.npy`` shards, memory-mapped and resampled one
series at a time."""

from __future__ import annotations

import bisect
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vqfast.data.cleaning import DataError, check_how, check_length, is_numeric
from vqfast.inputs import prepare_series


class ShardedSeries(torch.utils.data.Dataset):
    """Univariate series from a directory of ``.npy`` shards, for data that does not fit in memory.

    Every ``*.npy`` file in ``directory`` (sorted by name) is a shard: a numeric array
    ``(n_i, T_i)`` or ``(n_i, C, T_i)``, memory-mapped (``np.load(mmap_mode="r")``), so only the
    series accessed are read. All shards must have the same ``C``; ``T_i`` may differ. Item ``k``
    is one channel of one sample, resampled to ``length`` on access: a float32 tensor
    ``(length,)``; series are numbered shard by shard, sample by sample, channel by channel.
    ``how`` as in :func:`vqfast.prepare_series`; with ``"pad"`` every series is zero-padded to
    the longest ``T_i`` of all shards first. A series holding NaN or Inf raises when accessed.
    Works with ``DataLoader`` workers (shards are re-opened in each worker, not pickled).
    """

    def __init__(self, directory, length: int = 512, how: str = "resample"):
        where = "ShardedSeries"
        check_how(how, where)
        self.length = check_length(length, where)
        self.how = how
        self.directory = Path(directory).expanduser()
        if not self.directory.exists():
            raise FileNotFoundError(f"{where}: directory {str(self.directory)!r} does not exist")
        if not self.directory.is_dir():
            raise NotADirectoryError(f"{where}: {str(self.directory)!r} is not a directory; give "
                                     "the folder holding the .npy shards (for a single file use "
                                     "load_dataset)")
        self.paths = sorted(p for p in self.directory.glob("*.npy") if p.is_file())
        if not self.paths:
            raise DataError(f"{where}: no .npy shards in {str(self.directory)!r}; save each shard "
                            "with numpy.save(dir / 'shard_000.npy', x) where x is (n, T) or "
                            "(n, C, T)")
        channels, counts, lengths = {}, [], []
        for p in self.paths:
            a = self._open(p)
            if not is_numeric(a):
                raise DataError(f"{where}: shard {p.name!r} holds {a.dtype} data; shards must be "
                                "numeric (float) arrays")
            if a.ndim not in (2, 3):
                raise DataError(f"{where}: shard {p.name!r} has shape {a.shape}; shards must be "
                                "(n, T) or (n, C, T)")
            c = 1 if a.ndim == 2 else a.shape[1]
            if c == 0:
                raise DataError(f"{where}: shard {p.name!r} has no channels (shape {a.shape})")
            if a.shape[-1] < 2:
                raise DataError(f"{where}: shard {p.name!r} has series of {a.shape[-1]} point(s) "
                                f"(shape {a.shape}); a shape needs at least 2")
            channels[p.name] = c
            counts.append(a.shape[0] * c)
            lengths.append(a.shape[-1])
        if len(set(channels.values())) != 1:
            raise DataError(f"{where}: shards must all have the same number of channels, got "
                            f"{channels}")
        self.channels = next(iter(channels.values()))
        self.max_points = max(lengths)
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).tolist()
        if self.offsets[-1] == 0:
            raise DataError(f"{where}: the shards in {str(self.directory)!r} hold no series")
        self._arrays: dict[int, np.ndarray] = {}

    @staticmethod
    def _open(path: Path) -> np.ndarray:
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as e:
            raise DataError(f"ShardedSeries: cannot read shard {str(path)!r} "
                            f"({type(e).__name__}: {e}); shards must be numeric arrays saved "
                            "with numpy.save") from e

    def _shard(self, i: int) -> np.ndarray:
        a = self._arrays.get(i)
        if a is None:
            a = self._arrays[i] = self._open(self.paths[i])
        return a

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_arrays"] = {}
        return state

    def __len__(self) -> int:
        """Total number of univariate series (samples times channels, over all shards)."""
        return int(self.offsets[-1])

    def locate(self, index: int) -> tuple[Path, int, int]:
        """``(shard path, row, channel)`` of item ``index``."""
        s, row, ch = self._locate(index)
        return self.paths[s], row, ch

    def _locate(self, index: int) -> tuple[int, int, int]:
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"ShardedSeries: index {index} out of range for {n} series")
        s = bisect.bisect_right(self.offsets, index) - 1
        local = index - self.offsets[s]
        return s, local // self.channels, local % self.channels

    def __getitem__(self, index: int) -> torch.Tensor:
        shard, row, ch = self._locate(int(index))
        path, a = self.paths[shard], self._shard(shard)
        s = np.asarray(a[row] if a.ndim == 2 else a[row, ch], dtype=np.float32)
        if not np.isfinite(s).all():
            raise DataError(f"ShardedSeries: shard {path.name!r} row {row}"
                            f"{f' channel {ch}' if a.ndim == 3 else ''} contains NaN or Inf; "
                            "clean that shard (fill or drop the series) before training")
        x = torch.from_numpy(s.copy())[None]
        if self.how == "pad" and x.shape[1] < self.max_points:
            x = F.pad(x, (0, self.max_points - x.shape[1]))
        return prepare_series(x, length=self.length, how="resample")[0]
