"""Reading the authors' Lightning checkpoints, and vqfast's own ``save_pretrained`` format
(``model.safetensors`` + ``config.json``)."""

from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path

import torch

from vqfast.environment import package_version
from vqfast.fileio import atomic_write
from vqfast.model.config import LOSS_WEIGHTS, keywords_from_official

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


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


def read_official(path, map_location="cpu") -> dict:
    """The checkpoint dict, read with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with torch.serialization.safe_globals(_STAND_INS):
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(
            f"{path} holds objects other than tensors and plain settings, so it is not read "
            f"(weights_only=True). The loader said: {str(exc).splitlines()[0]}"
        ) from exc
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"{path} is not a Lightning checkpoint (no 'state_dict')")
    return ckpt


def official_config(hparams) -> tuple[dict, dict]:
    """``(VQShape keywords, loss weights)`` from the authors' ``hyper_parameters``."""
    hp = dict(vars(hparams)) if isinstance(hparams, argparse.Namespace) else dict(hparams)
    config = keywords_from_official(hp)
    weights = {k: float(hp[k]) for k in LOSS_WEIGHTS if k in hp}
    return config, weights


def load_official(cls, path, map_location="cpu", **overrides):
    ckpt = read_official(path, map_location)
    config, loss_weights = official_config(ckpt.get("hyper_parameters", {}))
    config.update(overrides)
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


def read_config(directory) -> dict:
    directory = Path(directory)
    cfg_path = directory / CONFIG_NAME
    if not cfg_path.is_file():
        raise FileNotFoundError(
            f"{directory} holds no {CONFIG_NAME}; expected a folder written by save_pretrained "
            "(for the authors' .ckpt files use VQShape.from_official_checkpoint)"
        )
    return json.loads(cfg_path.read_text())


def load_pretrained(cls, directory, map_location="cpu", **overrides):
    from safetensors.torch import load_file

    directory = Path(directory)
    meta = read_config(directory)
    model_cls = _saved_class(cls, meta.get("model_type", cls.__name__))
    config = {**meta["config"], **overrides}
    model = model_cls(**config)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"{directory} has a config but no {WEIGHTS_NAME}")
    load_vqshape_weights(model, load_file(str(weights), device="cpu"))
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


__all__ = ["load_official", "load_pretrained", "official_config", "read_official",
           "save_pretrained"]
