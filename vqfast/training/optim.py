"""The optimizer and the optional ``torch.compile`` of a pre-training run.

- ``make_optimizer``: AdamW with the run's learning rate and weight decay, in torch's fused kernel
  (one pass over all parameters) where the parameters allow it, else torch's ``foreach`` kernel.
  Same update as the plain for-loop AdamW up to float rounding.
- ``compile_model``: ``torch.compile`` of the model's layers (``dynamic=False``: one graph per
  batch shape, none recompiled across steps of the same shape), with the compile time measured
  on the first step (``CompiledModel.warmup_seconds``).
"""

from __future__ import annotations

import time

import torch

IMPLEMENTATIONS = ("fused", "foreach", "for-loop")


def make_optimizer(params, settings=None, *, lr: float | None = None,
                   weight_decay: float | None = None, implementation: str = "fused"):
    """``torch.optim.AdamW`` over ``params`` with ``settings.lr`` / ``settings.weight_decay``
    (a ``TrainSettings``), or ``lr`` / ``weight_decay`` given directly (these win).

    ``implementation``: ``"fused"`` (default; falls back to ``"foreach"`` where torch has no fused
    kernel for the parameters' device or dtype), ``"foreach"``, or ``"for-loop"`` (the authors'
    default on CPU)."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"make_optimizer: implementation={implementation!r} is not one of "
                         f"{IMPLEMENTATIONS}")
    lr = lr if lr is not None else getattr(settings, "lr", None)
    weight_decay = (weight_decay if weight_decay is not None
                    else getattr(settings, "weight_decay", 0.01))
    if lr is None or not lr > 0:
        raise ValueError(f"make_optimizer: the learning rate must be > 0, got {lr!r}; pass lr= "
                         "or settings with an lr")
    params = list(params)
    if not params:
        raise ValueError("make_optimizer: no parameters to optimize")
    tensors = [p for group in params for p in (group["params"] if isinstance(group, dict)
                                                 else [group])]
    if implementation == "fused" and not _fused_supported(tensors):
        implementation = "foreach"
    flags = {"fused": {"fused": True}, "foreach": {"foreach": True},
             "for-loop": {"foreach": False}}[implementation]
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **flags)


def _fused_supported(tensors) -> bool:
    devices = {t.device.type for t in tensors}
    dtypes = {t.dtype for t in tensors}
    return (len(devices) == 1 and devices <= {"cpu", "cuda", "mps", "xpu"}
            and dtypes <= {torch.float32, torch.float16, torch.bfloat16, torch.float64})


class CompiledModel:
    """What ``compile_model`` returns: call it as the model; ``warmup_seconds`` is the wall time
    of the first call (compilation included), ``None`` before it."""

    def __init__(self, model, compiled):
        self.model = model
        self.compiled = compiled
        self.warmup_seconds: float | None = None

    def __call__(self, *args, **kwargs):
        if self.warmup_seconds is not None:
            return self.compiled(*args, **kwargs)
        start = time.perf_counter()
        result = self.compiled(*args, **kwargs)
        self.warmup_seconds = time.perf_counter() - start
        return result

    def __getattr__(self, name):
        return getattr(self.model, name)


def compile_model(model, *, mode: str | None = None, backend: str = "inductor") -> CompiledModel:
    """``torch.compile`` of the parts of a ``VQShape`` that are plain torch (patch encoder,
    tokenizer, patch decoder, shape decoder; vqfast's own ops stay as they are) with
    ``dynamic=False``. Compiled code draws its random numbers (patch dropping, dropout) with its
    own generator, so a compiled step does not drop the same units as an eager one.
    The model is changed in place (its layers' forward passes are compiled) and returned wrapped,
    so that the first call's time, compilation included, is recorded. ``mode`` and ``backend``
    are ``torch.compile``'s."""
    for name in ("encoder", "tokenizer", "decoder", "shape_decoder"):
        if not hasattr(model, name):
            raise TypeError(f"compile_model: {type(model).__name__} has no {name!r}; pass a "
                            "vqfast VQShape")
    for name in ("encoder", "tokenizer", "decoder", "shape_decoder"):
        getattr(model, name).compile(dynamic=False, mode=mode, backend=backend)
    return CompiledModel(model, model)
