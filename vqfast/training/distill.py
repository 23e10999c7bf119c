"""Teacher -> student distillation: keep a text-guided codebook, predict without text.

The teacher is a ``VQShapeText`` trained with text, so its codebook holds text-guided concepts. The
student is a plain ``VQShape`` that reads only the series: it takes the teacher's codebook and keeps
it **frozen** (no gradient, never given to the optimizer), and is trained with the usual VQShape
losses plus ``distill_loss``, which makes its ``z_e`` (optionally also ``t, l, mu, sigma``) follow
the teacher's for the same input. The teacher's targets come from the whole series with its text,
in eval mode; the student sees the series as in pre-training (patches masked).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vqfast.model import VQShape

TARGETS = ("z_e", "t_pred", "l_pred", "mu_pred", "sigma_pred")


def student_from_teacher(teacher, init: str = "teacher") -> VQShape:
    """A text-free ``VQShape`` with the teacher's frozen codebook.

    ``init="teacher"`` also starts every other shared weight from the teacher's (a warm start);
    ``"scratch"`` keeps the student's seeded initial weights apart from the codebook.
    """
    if init not in ("teacher", "scratch"):
        raise ValueError(f"student_from_teacher: init must be 'teacher' or 'scratch', got {init!r}")
    config = getattr(teacher, "vqshape_config", teacher.config)
    student = VQShape(**config)
    student.loss_weights.update(teacher.loss_weights)
    teacher_state = teacher.state_dict()
    if init == "teacher":
        shared = {k: v for k, v in teacher_state.items() if k in student.state_dict()}
        student.load_state_dict(shared, strict=True)
    else:
        with torch.no_grad():
            student.codebook.embedding.weight.copy_(teacher_state["codebook.embedding.weight"])
    student.codebook.embedding.weight.requires_grad_(False)
    return student.to(teacher.device)


def trainable_parameters(model):
    """Parameters to give the optimizer (the frozen codebook is left out, so it stays bit-for-bit
    the teacher's)."""
    return [p for p in model.parameters() if p.requires_grad]


@torch.no_grad()
def teacher_targets(teacher, x: torch.Tensor, text) -> dict:
    """The teacher's latents for ``x`` with its text (eval mode, every patch)."""
    was_training = teacher.training
    teacher.eval()
    _, outputs = teacher(x, mode="tokenize", text=text, return_latents=True)
    teacher.train(was_training)
    return {k: outputs[k].detach() for k in TARGETS}


def distill_loss(student_outputs: dict, targets: dict, weights: dict) -> torch.Tensor:
    """``sum_k weights[k] * mse(student[k], teacher[k])`` over ``TARGETS`` (``z_e`` by default)."""
    unknown = set(weights) - set(TARGETS)
    if unknown:
        raise ValueError(f"distill_loss: unknown targets {sorted(unknown)}; choose from {TARGETS}")
    total = None
    for key, w in weights.items():
        if w:
            term = w * F.mse_loss(student_outputs[key].float(), targets[key].float())
            total = term if total is None else total + term
    if total is None:
        raise ValueError("distill_loss: every weight is zero")
    return total
