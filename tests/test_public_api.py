"""Every name users import today (README, docs, the previous layout's public modules) still
imports, and every documented command still starts."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PUBLIC = {
    "vqfast": ["VQShape", "VQShapeText", "prepare_series", "SeriesError", "DEFAULTS",
               "total_loss", "__version__"],
    "vqfast.ops": ["nearest_code", "nearest_code_ref", "code_histogram", "code_histogram_ref",
                   "vq_loss", "vq_loss_ref", "extract_subsequence", "extract_subsequence_ref",
                   "backends", "BACKENDS", "BackendUnavailableError"],
    "vqfast.model": ["VQShape", "VQShapeText", "DEFAULTS", "total_loss"],
    "vqfast.data": ["CACHE_VERSION", "DataError", "SeriesData", "ShardedSeries",
                    "available_datasets", "load_dataset", "pretraining_series"],
    "vqfast.text": ["DEFAULT_CHANNEL_NAMES", "DEFAULT_MODEL", "DEFAULT_TEMPLATES",
                    "GENERIC_TEMPLATE", "TEXT_CACHE_VERSION", "TEXT_SOURCES", "TextEmbeddings",
                    "TextEncoder", "TextError", "amplitude_scale", "clear_text_cache",
                    "describe_batch", "describe_series", "example_text_file", "label_texts",
                    "load_text_file", "save_text_file", "texts_for"],
    "vqfast.presets": ["PRESETS", "Preset", "TrainSettings", "get_preset", "apply_overrides"],
    "vqfast.probe": ["ProbeSettings", "ProbeResult", "extract_features", "linear_probe",
                     "probe_model", "codebook_usage", "main"],
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names_import(module):
    mod = importlib.import_module(module)
    missing = [name for name in PUBLIC[module] if not hasattr(mod, name)]
    assert not missing, f"{module} lost {missing}"


def test_models_are_the_same_objects_everywhere():
    import vqfast
    import vqfast.model

    assert vqfast.VQShape is vqfast.model.VQShape
    assert vqfast.VQShapeText is vqfast.model.VQShapeText


def test_triton_kernel_modules_import():
    pytest.importorskip("triton")
    for op in ("nearest_code", "code_histogram", "vq_loss", "extract_subsequence"):
        importlib.import_module(f"vqfast.kernels.{op}")


@pytest.mark.parametrize("command", [
    [sys.executable, "vqfast/train.py", "--help"],
    [sys.executable, "-m", "vqfast.probe", "--help"],
    [sys.executable, "-m", "vqfast.build", "--help"],
    [sys.executable, "-m", "vqfast.experiments.text_guidance", "--help"],
    [sys.executable, "bench/quantize.py", "--help"],
    [sys.executable, "bench/model_step.py", "--help"],
    [sys.executable, "bench/ops/dropout.py", "--help"],
])
def test_documented_commands_start(command):
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage" in done.stdout.lower()
