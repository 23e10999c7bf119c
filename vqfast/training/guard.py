"""Stop a run at the first non-finite loss or gradient, before that step's update; warn when the
loss diverges. One host sync per optimizer step (and one all-reduce under several processes, so
every process stops at the same step)."""

from __future__ import annotations

import math
import warnings

import torch

DIVERGENCE_FACTOR = 1e4  # a logged loss this many times the first one gets a warning


class NonFiniteError(RuntimeError):
    """A loss term or the gradient norm went NaN or infinite; the run stops."""


class StepHealth:
    """Which loss terms were non-finite in any micro-batch of one optimizer step."""

    def __init__(self):
        self.names: list[str] = []
        self.bad: torch.Tensor | None = None
        self.seen: list[dict[str, torch.Tensor]] = []

    def add(self, terms: dict[str, torch.Tensor]) -> None:
        flags = torch.stack([~torch.isfinite(v.detach()).all() for v in terms.values()])
        if self.bad is None:
            self.names, self.bad = list(terms), flags
        else:
            self.bad = self.bad | flags
        self.seen.append({k: v.detach() for k, v in terms.items()})

    def check(self, step: int, grad_norm: torch.Tensor, reduce=None, last_good: str = "") -> None:
        """Raise ``NonFiniteError`` naming ``step``, the terms and ``last_good`` (the last finite
        checkpoint) when a term or ``grad_norm`` is not finite on any process (``reduce``:
        ``accelerator.reduce`` when there are several)."""
        norm = grad_norm.detach().float().reshape(1).to(self.bad.device)
        flags = torch.cat([self.bad, ~torch.isfinite(norm)]).float()
        if reduce is not None:
            flags = reduce(flags, "sum")
        flags = flags.tolist()
        if not any(flags):
            return
        names = [n for n, f in zip(self.names, flags) if f]
        values = ", ".join(f"{n}={_show([s[n] for s in self.seen])}" for n in names)
        parts = [f"non-finite loss at step {step} ({values})"] if names else []
        if flags[-1] or not names:
            parts.append(f"non-finite gradient norm at step {step} ({_show([norm])})")
        raise NonFiniteError(
            "; ".join(parts) + ". Training stopped before applying this step, and no model was "
            f"exported. {last_good or 'No checkpoint had been saved yet.'} Likely causes: a "
            "learning rate too high (lower --lr, keep --set grad_clip=1) or extreme values in "
            "the data (a series of ~1e30 overflows float32).")


def _show(values: list[torch.Tensor]) -> str:
    """The first non-finite value among ``values`` (each micro-batch's), else the last one."""
    v = torch.cat([t.detach().float().reshape(-1).cpu() for t in values])
    bad = v[~torch.isfinite(v)]
    return str(float(bad[0] if bad.numel() else v[-1]))


def grad_norm(parameters) -> torch.Tensor:
    """The total 2-norm of the gradients (what clipping would measure), without clipping."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.nn.utils.get_total_norm(grads)


class DivergenceWatch:
    """Warns once when a logged loss exceeds ``DIVERGENCE_FACTOR`` times the first logged one."""

    def __init__(self, first: float | None = None):
        self.first, self.warned = first, False

    def see(self, step: int, loss: float) -> None:
        if self.first is None:
            self.first = loss
            return
        if (not self.warned and math.isfinite(loss) and self.first > 0
                and loss > DIVERGENCE_FACTOR * self.first):
            self.warned = True
            warnings.warn(
                f"the loss is diverging: {loss:.4g} at step {step}, over {DIVERGENCE_FACTOR:g}x "
                f"its first logged value {self.first:.4g}; lower --lr or keep gradient clipping "
                "(--set grad_clip=1)", RuntimeWarning, stacklevel=2)
