"""Reading the authors' Lightning checkpoints, and vqfast's own ``save_pretrained`` format
(``model.safetensors`` + ``config.json``).

Every file is read through ``load_torch_file``, ``load_safetensors_file`` or ``read_json_file``: a
missing file is ``FileNotFoundError``, a truncated or damaged one ``CorruptFileError`` naming it
(never torch's advice to retry with ``weights_only=False``, which would run code from the file).
"""

from __future__ import annotations

import argparse
import json
import pickle
import re
import struct
import zipfile
from dataclasses import fields
from pathlib import Path

import torch

from vqfast.environment import package_version
from vqfast.fileio import atomic_write
from vqfast.model.config import LOSS_WEIGHTS, VQShapeConfig

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

# The keywords that define the trained network. The weights of some (the head counts) have the
# same shapes whatever their value, so a keyword that contradicts the checkpoint would load and
# silently compute something else: refused. The others (loss weights, mask ratio, smoothing of
# the shape targets) only shape further training and may be changed.
ARCHITECTURE = ("dim_embedding", "patch_size", "num_patch", "num_enc_head", "num_enc_layer",
                "num_tokenizer_head", "num_tokenizer_layer", "num_dec_head", "num_dec_layer",
                "num_token", "len_s", "len_input", "num_code", "dim_code", "max_shape_len",
                "shape_source", "window_layout")
HEAD_COUNTS = ("num_enc_head", "num_tokenizer_head", "num_dec_head")


# Globals that Lightning checkpoints hold besides tensors, read as harmless stand-ins so that the
# checkpoint still loads with weights_only=True (no arbitrary code runs, Lightning not needed):
# its AttributeDict (a dict subclass) is read as a plain dict.
_STAND_INS = [
    (dict, "lightning.fabric.utilities.data.AttributeDict"),
    (dict, "lightning_fabric.utilities.data.AttributeDict"),
    (dict, "pytorch_lightning.utilities.parsing.AttributeDict"),
    (dict, "lightning.pytorch.utilities.parsing.AttributeDict"),
    (argparse.Namespace, "argparse.Namespace"),
]

# The start of a pre-1.6 torch.save file (not a zip archive): pickle protocol 2, then its magic
# number 0x1950a86a20f9469cfc6c as a pickled long.
_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"
# Messages of torch's zip reader for a damaged archive.
_READER_DAMAGE = re.compile(r"PytorchStreamReader|zip archive|archive is corrupted|invalid header",
                            re.IGNORECASE)


class CorruptFileError(ValueError):
    """A file vqfast reads is truncated or damaged; the message names it and the fix."""


def _corrupt(path: Path, kind: str, detail: str, fix: str) -> CorruptFileError:
    return CorruptFileError(f"{path} is not a complete {kind} (truncated or corrupt: {detail}); "
                            f"{fix}")


def _check_archive(path: Path, fix: str) -> None:
    """An empty file, a file that is not a zip archive (torch.save writes one) or a member whose
    CRC-32 does not match: ``CorruptFileError``. torch.load itself reads flipped bytes inside a
    member silently, so every member is checked."""
    kind = "PyTorch checkpoint"
    if path.stat().st_size == 0:
        raise _corrupt(path, kind, "the file is empty, 0 bytes", fix)
    with open(path, "rb") as f:
        legacy = f.read(len(_LEGACY_TORCH_MAGIC)) == _LEGACY_TORCH_MAGIC
    if legacy:
        return
    if not zipfile.is_zipfile(path):
        raise _corrupt(path, kind, "no zip directory at its end, so it was cut short or is not "
                       "a torch.save file", fix)
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.CRC == 0:  # written with torch's CRC-32 turned off: nothing to check
                    continue
                with archive.open(info) as member:
                    while member.read(1 << 24):
                        pass
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise _corrupt(path, kind, str(exc), fix) from None


def load_torch_file(path, map_location="cpu", safe_globals=(), fix: str | None = None):
    """``torch.load(path, weights_only=True)`` with one clear error per kind of bad file."""
    path = Path(path)
    fix = fix or "re-download or re-export it"
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    _check_archive(path, fix)
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found:
            raise ValueError(
                f"{path} holds objects other than tensors and plain settings ({found.group(1)}), "
                "so it is not read: vqfast loads checkpoints with weights_only=True and never "
                "runs code from a file. Re-save its tensors and settings with torch.save"
            ) from None
        detail = re.search(r"WeightsUnpickler error: *\n*(.+)", str(exc))
        raise _corrupt(path, "PyTorch checkpoint",
                       detail.group(1).strip() if detail else "unreadable pickle", fix) from None
    except (EOFError, zipfile.BadZipFile, UnicodeDecodeError, struct.error, KeyError, IndexError,
            ValueError, TypeError, AttributeError, OverflowError) as exc:
        # What a damaged pickle inside an intact archive makes the unpickler raise.
        raise _corrupt(path, "PyTorch checkpoint", f"{type(exc).__name__}: {exc}"[:160],
                       fix) from None
    except RuntimeError as exc:
        if not _READER_DAMAGE.search(str(exc)):
            raise
        raise _corrupt(path, "PyTorch checkpoint", str(exc).splitlines()[0][:120], fix) from None


def load_safetensors_file(path, fix: str) -> dict:
    """The tensors of a ``.safetensors`` file, on the CPU."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if path.stat().st_size == 0:
        raise _corrupt(path, "safetensors file", "the file is empty, 0 bytes", fix)
    try:
        return load_file(str(path), device="cpu")
    except SafetensorError as exc:
        raise _corrupt(path, "safetensors file", str(exc), fix) from None


def read_json_file(path, fix: str):
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise _corrupt(path, "JSON file", "not UTF-8 text", fix) from None
    except json.JSONDecodeError as exc:
        detail = ("the file is empty" if not exc.doc.strip()
                  else f"{exc.msg} (line {exc.lineno}, column {exc.colno})")
        raise _corrupt(path, "JSON file", detail, fix) from None


def read_official(path, map_location="cpu") -> dict:
    """The checkpoint dict, read with ``weights_only=True``."""
    path = Path(path)
    ckpt = load_torch_file(path, map_location, _STAND_INS,
                           fix="re-download it (or export it again from the training run)")
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"{path} is not a Lightning checkpoint (no 'state_dict')")
    return ckpt


def _hparams_dict(hparams) -> dict:
    if hparams is None:
        return {}
    return dict(vars(hparams)) if isinstance(hparams, argparse.Namespace) else dict(hparams)


def recorded_keywords(hparams) -> dict[str, tuple[str, object]]:
    """``{VQShape keyword: (its name in hyper_parameters, value)}`` for every keyword that the
    authors' ``hyper_parameters`` record (under their name, or their fallback's)."""
    hp, recorded = _hparams_dict(hparams), {}
    for f in fields(VQShapeConfig):
        for name in (f.metadata["official"] or f.name, f.metadata["fallback"]):
            if name is not None and name in hp:
                recorded[f.name] = (name, hp[name])
                break
    return recorded


def official_config(hparams, keywords: dict | None = None, source="the checkpoint"
                    ) -> tuple[dict, dict]:
    """``(VQShape keywords, loss weights)`` from the authors' ``hyper_parameters``, completed by
    ``keywords``. A keyword that contradicts a recorded architecture setting, or a required
    setting that neither gives, is an error naming it."""
    hp, keywords = _hparams_dict(hparams), dict(keywords or {})
    recorded = recorded_keywords(hp)
    config = {k: v for k, (_, v) in recorded.items()}
    check_architecture(config, keywords, source,
                       {k: f"its hyper_parameters say {entry}={value!r}"
                        for k, (entry, value) in recorded.items()})
    config.update(keywords)
    missing = [f.name for f in fields(VQShapeConfig)
               if f.name not in config and not f.metadata["optional"]]
    if missing:
        lack = "has no hyper_parameters" if not hp else "has hyper_parameters without"
        raise ValueError(
            f"{source} {lack} {', '.join(missing)}; pass them as keywords: "
            f"from_official_checkpoint(path, {', '.join(f'{k}=...' for k in missing)}). The "
            f"weights fix the sizes but not the head counts ({', '.join(HEAD_COUNTS)}): give the "
            "values the model was trained with"
        )
    weights = {k: float(hp[k]) for k in LOSS_WEIGHTS if k in hp}
    return config, weights


def check_architecture(saved: dict, keywords: dict, source, says: dict | None = None) -> None:
    """Refuse keywords that change an architecture setting ``saved`` records (``says``: how the
    file states each one, for the message)."""
    says = says or {}
    clashes = [f"{k}={keywords[k]!r} but {says.get(k, f'it has {k}={saved[k]!r}')}"
               for k in ARCHITECTURE if k in keywords and k in saved and keywords[k] != saved[k]]
    if clashes:
        raise ValueError(
            f"{source} was trained with other settings than the keywords give: "
            f"{'; '.join(clashes)}. Its weights would load (head counts do not change their "
            "shapes) and compute something else: drop those keywords"
        )


def load_official(cls, path, map_location="cpu", **overrides):
    ckpt = read_official(path, map_location)
    config, loss_weights = official_config(ckpt.get("hyper_parameters"), overrides, path)
    model = cls(**config)
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    if not state:
        raise ValueError(f"{path}: no parameters with the 'model.' prefix in state_dict")
    load_vqshape_weights(model, state)
    model.loss_weights.update(loss_weights)
    return model.to(map_location).eval()


def load_vqshape_weights(model, state: dict) -> None:
    """Load a VQShape state dict strictly, except that parameters a subclass adds (VQShapeText's
    text layers, ``model.NEW_PARAMETER_PREFIXES``) may be missing: they keep their initial
    values."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    new = tuple(getattr(model, "NEW_PARAMETER_PREFIXES", ()))
    missing = [k for k in missing if not (new and k.startswith(new))]
    if missing or unexpected:
        raise RuntimeError(
            f"the weights do not fit {type(model).__name__}: missing {missing[:8]}, unexpected "
            f"{unexpected[:8]} (was the model built with the checkpoint's configuration?)"
        )


def save_pretrained(model, directory) -> Path:
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    config = {
        "model_type": type(model).__name__,
        "vqfast_version": package_version("vqfast"),
        "config": model.config,
        "loss_weights": dict(model.loss_weights),
    }
    # Weights first, config last: a directory with a config always has its weights.
    atomic_write(directory / WEIGHTS_NAME, lambda p: save_file(state, str(p)))
    atomic_write(directory / CONFIG_NAME, json.dumps(config, indent=2, sort_keys=True) + "\n")
    return directory


_PRETRAINED_FIX = "save the model again with save_pretrained (or copy the folder again)"


def read_config(directory) -> dict:
    directory = Path(directory)
    cfg_path = directory / CONFIG_NAME
    if not cfg_path.is_file():
        raise FileNotFoundError(
            f"{directory} holds no {CONFIG_NAME}; expected a folder written by save_pretrained "
            "(for the authors' .ckpt files use VQShape.from_official_checkpoint)"
        )
    meta = read_json_file(cfg_path, _PRETRAINED_FIX)
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise CorruptFileError(f"{cfg_path} is not a vqfast {CONFIG_NAME} (no 'config' settings); "
                               f"{_PRETRAINED_FIX}")
    return meta


def load_pretrained(cls, directory, map_location="cpu", **overrides):
    directory = Path(directory)
    meta = read_config(directory)
    model_cls = _saved_class(cls, meta.get("model_type", cls.__name__))
    check_architecture(meta["config"], overrides, directory / CONFIG_NAME)
    config = {**meta["config"], **overrides}
    model = model_cls(**config)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"{directory} has a config but no {WEIGHTS_NAME}")
    load_vqshape_weights(model, load_safetensors_file(weights, _PRETRAINED_FIX))
    model.loss_weights.update(meta.get("loss_weights", {}))
    return model.to(map_location).eval()


def _saved_class(cls, name: str):
    """``cls`` or its subclass called ``name`` (the class that saved the folder: a VQShapeText
    folder loads as a VQShapeText through ``VQShape.from_pretrained``)."""
    classes = [cls]
    for c in classes:
        if c.__name__ == name:
            return c
        classes.extend(c.__subclasses__())
    return cls


__all__ = ["ARCHITECTURE", "CorruptFileError", "load_official", "load_pretrained",
           "load_safetensors_file", "load_torch_file", "official_config", "read_json_file",
           "read_official", "recorded_keywords", "save_pretrained"]
