"""Codebook care during pre-training (vqfast; off in the ``paper`` presets, on in ``default``).

The authors' codebook starts uniform in ±1/K, nearly a point, and moves by gradient steps of about
the learning rate, while the latents ``z_e`` it quantizes are of order 1: for hundreds of steps
every code decodes to the same shape, and codes that no latent is nearest to never move again.
Two remedies from VQ practice:

- ``kmeans_init_step``: after that many optimizer steps, every code is set to a k-means centroid
  of the latents of the last ``BUFFER_BATCHES`` batches (the latents have had time to become
  informative by then);
- ``dead_code_every``: every that many steps (after the k-means), each code no latent chose since
  the last check is moved onto a random recent latent, and its optimizer moments are cleared.

Every process sees the same latents (gathered) and draws with the same seed, so the codebooks stay
identical across processes; the buffer and counts travel with checkpoints, so a resumed run does
what an uninterrupted one would.
"""

from __future__ import annotations

import torch

BUFFER_BATCHES = 4  # batches of latents kept for the k-means and the restarts
KMEANS_ITERATIONS = 20


@torch.no_grad()
def kmeans(x: torch.Tensor, k: int, iterations: int = KMEANS_ITERATIONS,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """``k`` centroids ``(k, D)`` of the rows of ``x (n, D)`` (Lloyd's algorithm from ``k``
    distinct random rows; a centroid left without members is moved onto a random row)."""
    if x.dim() != 2 or x.shape[0] < 1:
        raise ValueError(f"kmeans: x must be a non-empty (n, D) tensor, got {tuple(x.shape)}")
    x = x.float()
    n = x.shape[0]
    pick = torch.randperm(n, generator=generator)[:k]
    if n < k:
        pick = torch.cat([pick, torch.randint(n, (k - n,), generator=generator)])
    centroids = x[pick.to(x.device)].clone()
    for _ in range(iterations):
        assign = torch.cdist(x, centroids).argmin(1)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        empty = counts == 0
        centroids = sums / counts.clamp(min=1).unsqueeze(1)
        if empty.any():
            fill = torch.randint(n, (int(empty.sum()),), generator=generator).to(x.device)
            centroids[empty] = x[fill]
    return centroids


class CodebookCare:
    """Call ``observe(z_e, code_idx)`` after every forward pass of a step and ``after_step(step,
    codebook, optimizer)`` after each optimizer step; ``gather`` collects a tensor from every
    process (``accelerator.gather``; identity on one process)."""

    def __init__(self, kmeans_init_step: int = 0, dead_code_every: int = 0, seed: int = 0,
                 gather=None):
        for name, value in (("kmeans_init_step", kmeans_init_step),
                            ("dead_code_every", dead_code_every)):
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a whole number >= 0 (0: off), got {value!r}")
        self.kmeans_init_step, self.dead_code_every = kmeans_init_step, dead_code_every
        self.seed = seed
        self.gather = gather or (lambda t: t)
        self.buffer: list[torch.Tensor] = []
        self.counts: torch.Tensor | None = None
        self.events: list[dict] = []  # what was done, for the log and the report

    @property
    def active(self) -> bool:
        return bool(self.kmeans_init_step or self.dead_code_every)

    @torch.no_grad()
    def observe(self, z_e: torch.Tensor, code_idx: torch.Tensor, num_code: int) -> None:
        z = self.gather(z_e.detach().reshape(-1, z_e.shape[-1]).contiguous()).float().cpu()
        idx = self.gather(code_idx.detach().reshape(-1).contiguous()).long().cpu()
        self.buffer = (self.buffer + [z])[-BUFFER_BATCHES:]
        counts = torch.bincount(idx, minlength=num_code)
        self.counts = counts if self.counts is None else self.counts + counts

    @torch.no_grad()
    def after_step(self, step: int, codebook: torch.nn.Embedding, optimizer=None) -> None:
        """A frozen codebook (a distilled student's, the teacher's bit for bit) is left alone."""
        if not self.buffer or not codebook.weight.requires_grad:
            return
        weight = codebook.weight
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        latents = torch.cat(self.buffer)
        if self.kmeans_init_step and step == self.kmeans_init_step:
            weight.copy_(kmeans(latents, weight.shape[0], generator=generator).to(weight))
            _clear_moments(optimizer, weight, torch.ones(weight.shape[0], dtype=torch.bool))
            self.events.append({"step": step, "kmeans": True})
            self.counts = None
        elif (self.dead_code_every and step % self.dead_code_every == 0
              and step > self.kmeans_init_step and self.counts is not None):
            dead = self.counts == 0
            if dead.any():
                pick = torch.randint(latents.shape[0], (int(dead.sum()),), generator=generator)
                weight[dead.to(weight.device)] = latents[pick].to(weight)
                _clear_moments(optimizer, weight, dead)
            self.events.append({"step": step, "restarted": int(dead.sum())})
            self.counts = None

    def state(self) -> dict:
        return {"buffer": [b.clone() for b in self.buffer],
                "counts": None if self.counts is None else self.counts.clone(),
                "events": list(self.events)}

    def load(self, state: dict | None) -> None:
        if not state:
            return
        self.buffer = list(state.get("buffer", []))
        self.counts = state.get("counts")
        self.events = list(state.get("events", []))


def _clear_moments(optimizer, weight: torch.Tensor, rows: torch.Tensor) -> None:
    """Zero Adam's moments of ``weight``'s ``rows`` (a moved code starts without momentum)."""
    if optimizer is None:
        return
    state = optimizer.state.get(weight, {})
    for key in ("exp_avg", "exp_avg_sq"):
        if key in state:
            state[key][rows.to(state[key].device)] = 0
