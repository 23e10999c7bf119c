"""The C++ library: built and used by ``auto`` on CPU, and its cache name keyed by the torch
install and the build inputs (two environments with one torch version keep their own builds; a
changed source gets a new one)."""

import shutil
from pathlib import Path

import pytest

import vqfast.ops as ops
from vqfast.ops import _extension

from .conftest import DEVICE


@pytest.mark.skipif(DEVICE.type != "cpu", reason="the GPU check builds no C++")
def test_compiled_ops_are_built_and_used_by_auto_on_cpu():
    # CI must exercise the compiled path, not a silent fallback.
    assert _extension.load_error() is None
    # torch draws dropout's mask through MKL on Intel CPUs (another stream): F.dropout there
    intel = "GenuineIntel" in Path("/proc/cpuinfo").read_text()
    assert ops.backends("cpu") == {
        "extract_subsequence": "cpp", "nearest_code": "cpp", "code_histogram": "cpp",
        "vq_loss": "cpp", "dropout": "reference" if intel else "cpp",
    }


def test_extension_name_follows_the_sources(tmp_path, monkeypatch):
    sources = tmp_path / "csrc"
    shutil.copytree(_extension.source_dir(), sources)
    monkeypatch.setattr(_extension, "source_dir", lambda: sources)
    name = _extension.extension_name()
    assert name == _extension.extension_name()  # stable
    assert name.isidentifier()
    header = sources / "codebook.h"
    header.write_text(header.read_text() + "\n// changed\n")
    assert _extension.extension_name() != name
    changed = _extension.extension_name()
    monkeypatch.setattr(_extension, "compile_flags", lambda: ["-O2"])
    assert _extension.extension_name() not in (name, changed)


def test_extension_name_differs_per_torch_install(tmp_path, monkeypatch):
    name = _extension.extension_name()
    monkeypatch.setattr(_extension, "torch_install_dir", lambda: tmp_path / "other-venv" / "torch")
    other = _extension.extension_name()
    assert other != name
    # Same torch version in both: only the install key differs.
    assert other.split("_")[:5] == name.split("_")[:5]
