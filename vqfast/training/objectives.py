"""What one pre-training step minimizes: plain VQShape, a text teacher, an aligned model, a
distilled student or a contrastive model; and the bank of text embeddings the text objectives
read from.

``objective(model, x, rows)``, with a batch of series and their row indices in the training pool,
gives ``(loss to minimize, losses to log)``; the loop calls ``objective.with_outputs(...)``, which
adds the forward pass's outputs (for the token metrics it logs).
"""

from __future__ import annotations

import torch

from vqfast.training.distill import distill_loss, teacher_targets


class TextBank:
    """Every distinct text encoded once; ``row_text[i]`` indexes the text of pool row ``i``."""

    def __init__(self, texts: list[str], encoder, device=None):
        unique = sorted(set(texts))
        position = {t: i for i, t in enumerate(unique)}
        self.texts = unique
        self.row_text = torch.tensor([position[t] for t in texts], dtype=torch.long)
        self.embeddings = encoder.encode(unique)
        if device is not None:
            self.embeddings = self.embeddings.to(device)

    def for_rows(self, rows: torch.Tensor):
        ids = self.row_text[rows.cpu()].to(self.embeddings.tokens.device)
        e = self.embeddings
        return type(e)(e.tokens[ids], e.mask[ids], e.sentence[ids])


class Objective:
    latents = False  # also return the pre-quantization latents z_e in the outputs

    def __call__(self, model, x, rows):
        loss, losses, _ = self.with_outputs(model, x, rows)
        return loss, losses

    def with_outputs(self, model, x, rows):
        raise NotImplementedError


class PlainObjective(Objective):
    def with_outputs(self, model, x, rows):
        outputs, losses = model(x, mode="pretrain", return_latents=self.latents)
        return _core(model).total_loss(losses), losses, outputs


class TextObjective(Objective):
    """A ``VQShapeText`` trained with text (the teacher), on two passes, with and without text,
    plus the alignment loss (``align=True``), or text-free with the contrastive loss against the
    text (``contrastive=True``)."""

    def __init__(self, bank: TextBank, align: bool = False, contrastive: bool = False):
        self.bank, self.align, self.contrastive = bank, align, contrastive

    def with_outputs(self, model, x, rows):
        outputs, losses = model(x, mode="pretrain", text=self.bank.for_rows(rows),
                                align=self.align, contrastive=self.contrastive,
                                return_latents=self.latents)
        return _core(model).total_loss(losses), losses, outputs


class DistillObjective(Objective):
    """A text-free student: VQShape losses plus ``weight * distill_loss`` toward the teacher's
    latents for the same series with their text."""

    def __init__(self, teacher, bank: TextBank, weight: float = 1.0, targets: dict | None = None):
        self.teacher, self.bank, self.weight = teacher, bank, weight
        self.targets = targets or {"z_e": 1.0}

    def with_outputs(self, model, x, rows):
        goal = teacher_targets(self.teacher, x, self.bank.for_rows(rows))
        outputs, losses = model(x, mode="pretrain", return_latents=True)
        losses = dict(losses)
        losses["distill_loss"] = distill_loss(outputs, goal, self.targets).reshape(1)
        total = _core(model).total_loss(losses) + self.weight * losses["distill_loss"].mean()
        return total, losses, outputs


def _core(model):
    """The model behind a DistributedDataParallel wrapper."""
    return getattr(model, "module", model)


def row_texts(sample_texts: list[list[str]], sources: torch.Tensor) -> list[str]:
    """Per pool row, the text of its sample: ``sources`` rows are (dataset, sample, channel)."""
    return [sample_texts[int(d)][int(s)] for d, s, _ in sources.tolist()]


__all__ = ["DistillObjective", "Objective", "PlainObjective", "TextBank", "TextObjective",
           "row_texts"]
