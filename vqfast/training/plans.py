"""What a pre-training run builds with or without text: the model (and, to distill, its teacher),
the objective, the texts to probe with and what the report records. ``vqfast/train.py`` makes one
plan from its options; nothing else there depends on text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vqfast.model import VQShape, VQShapeText
from vqfast.training.distill import student_from_teacher
from vqfast.training.objectives import (
    DistillObjective,
    PlainObjective,
    TextBank,
    TextObjective,
    row_texts,
)

TEXT_MODES = ("teacher", "align", "distill", "contrastive")


class PlainPlan:
    """Pre-training without text."""

    report = None  # what report.json records under "text"
    texts = None  # no per-sample texts to probe with

    def build_model(self, preset):
        """``(model, None)``: a ``VQShape`` with the preset's keywords and loss weights."""
        model = VQShape(**preset.model)
        model.loss_weights.update(preset.loss_weights)
        return model, None

    def objective(self, labelled, pool, sources, teacher, device, log=print):
        return PlainObjective()


@dataclass
class TextPlan:
    """Pre-training with per-sample text from ``source`` (see ``vqfast.text.texts_for``), in one
    of ``TEXT_MODES``; ``teacher`` is the exported ``VQShapeText`` a ``distill`` student learns
    from."""

    source: str
    mode: str = "teacher"
    teacher: Path | None = None
    fusion: str = "z"
    text_keys: str = "tokens"
    text_model: str | None = None
    template: str | None = None
    text_file: Path | None = None
    align_weight: float = 1.0
    contrastive_weight: float = 1.0
    distill_weight: float = 1.0
    distill_targets: tuple[str, ...] = ("z_e",)
    cache_dir: Path | None = None  # text embeddings are cached here

    @property
    def report(self) -> dict:
        return {"source": self.source, "mode": self.mode, "fusion": self.fusion,
                "keys": self.text_keys, "teacher": str(self.teacher) if self.teacher else None}

    @property
    def texts(self):
        """``texts(data, split)`` for the report's with-text probe; None for a contrastive model,
        whose tokens never read text."""
        return None if self.mode == "contrastive" else self.split_texts

    def split_texts(self, data, split: str) -> list[str]:
        """One text per sample of ``data``'s ``split``."""
        from vqfast.text import texts_for

        return texts_for(self.source, data, split, template=self.template,
                         text_file=self.text_file)

    def build_model(self, preset):
        """``(model, teacher)``: a ``VQShapeText`` (``teacher`` None), or for ``distill`` a
        text-free student of the frozen teacher, whose configuration replaces the preset's."""
        if self.mode == "distill":
            teacher = VQShapeText.from_pretrained(self.teacher)
            teacher.requires_grad_(False)
            preset.model = dict(teacher.vqshape_config)
            return student_from_teacher(teacher), teacher
        authors = {"shape_source": "tokens", "window_layout": "learned"}
        changed = {k: preset.model[k] for k, v in authors.items()
                   if preset.model.get(k, v) != v}
        if changed:
            # Text enters through the token heads, which shape_source="window" (and its grid of
            # windows) does not use.
            print("vqfast: text guidance fuses text into the token heads: "
                  + ", ".join(f"{k}={v!r}" for k, v in changed.items())
                  + f" of preset {preset.name!r} replaced by the authors' "
                  + ", ".join(f"{k}={authors[k]!r}" for k in changed))
            preset.model.update(authors)
        contrastive = self.contrastive_weight if self.mode == "contrastive" else 0.0
        model = VQShapeText(**preset.model, fusion=self.fusion, text_keys=self.text_keys,
                            text_model=self.text_model, align_weight=self.align_weight,
                            contrastive_weight=contrastive)
        model.loss_weights.update(preset.loss_weights)
        return model, None

    def objective(self, labelled, pool, sources, teacher, device, log=print):
        """The objective over ``pool``, whose rows come from ``sources`` (dataset, sample,
        channel) of the ``labelled`` datasets; raises ValueError when some rows have no text."""
        if not labelled or sources is None or len(sources) != len(pool):
            raise ValueError("--text needs labelled datasets (names or files) only: .npy shard "
                             "folders have no per-sample text")
        if self.source == "file" and len(labelled) > 1:
            raise ValueError("--text file pairs one notes file with one dataset; pass one "
                             "--dataset")
        from vqfast.text import TextEncoder

        texts = [self.split_texts(data, "train") for data in labelled]
        encoder = TextEncoder(self.text_model, device=device, cache_dir=self.cache_dir)
        bank = TextBank(row_texts(texts, sources), encoder, device)
        log(f"text: {len(bank.texts)} distinct texts for {len(sources)} series")
        if self.mode == "distill":
            return DistillObjective(teacher.to(device), bank, self.distill_weight,
                                    dict.fromkeys(self.distill_targets, 1.0))
        return TextObjective(bank, align=self.mode == "align",
                             contrastive=self.mode == "contrastive")


__all__ = ["TEXT_MODES", "PlainPlan", "TextPlan"]
