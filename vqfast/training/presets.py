"""Named settings for pre-training: the model's keywords and the optimisation.

- ``paper``: the authors' pre-training script (``pretrain.sh``): E 512, K 512, 64 tokens, batch
  512 x 4 accumulation, AdamW 1e-4, 1000 warm-up steps, cosine to 1e-5, bf16 on GPUs.
- ``paper-256``: the same with E 256 (their other released size).
- ``default-authors``: ``default`` with the authors' computation (the remedies off).
- ``default``: a small model that trains in minutes on a 2-core CPU and learns a codebook of
  distinct shapes (the main job's default). It turns on vqfast's remedies for degenerate shape
  tokens (docs/shape-collapse.md): 32 windows of 12 % of the series evenly spaced over it
  (``window_layout="grid"``), code, mu and sigma measured on each token's window
  (``shape_source="window"``), and k-means initialization and dead-code restart of the codebook.

Every value can be overridden (``vqfast/train.py --set key=value`` or the named options).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from vqfast.model import DEFAULTS, LOSS_WEIGHTS


@dataclass
class TrainSettings:
    """Optimisation settings (the authors' names where they have one)."""

    batch_size: int = 512  # per optimizer step and process, before accumulation
    grad_accum: int = 4
    lr: float = 1e-4
    min_lr: float = 1e-5
    weight_decay: float = 0.01
    warmup_steps: int = 1000
    warmup_start_factor: float = 1e-4
    grad_clip: float = 1.0
    max_steps: int = 100_000
    epochs: float | None = None  # when set, max_steps is derived from it
    checkpoint_every: int = 1000
    log_every: int = 50
    # vqfast's codebook care (vqfast.training.codebook; 0: off, the authors' training)
    kmeans_init_step: int = 0
    dead_code_every: int = 0


@dataclass
class Preset:
    name: str
    description: str
    model: dict
    train: TrainSettings
    loss_weights: dict = field(default_factory=lambda: dict(LOSS_WEIGHTS))

    def as_dict(self) -> dict:
        return {"name": self.name, "model": dict(self.model), "train": asdict(self.train),
                "loss_weights": dict(self.loss_weights)}


def _paper(dim: int) -> dict:
    return dict(DEFAULTS, dim_embedding=dim)


PRESETS: dict[str, Preset] = {
    "paper": Preset(
        "paper", "the authors' pre-training script: E 512, K 512 (needs GPUs)",
        _paper(512), TrainSettings(),
    ),
    "paper-256": Preset(
        "paper-256", "the authors' script with E 256 (their other released size)",
        _paper(256), TrainSettings(),
    ),
    "default": Preset(
        "default", "small and CPU-friendly: trains in minutes on 2 cores",
        dict(
            DEFAULTS, dim_embedding=64, num_enc_head=4, num_enc_layer=2, num_tokenizer_head=4,
            num_tokenizer_layer=2, num_dec_head=4, num_dec_layer=1, num_token=32, len_s=32,
            num_code=64, max_shape_len=0.12, shape_source="window", window_layout="grid",
        ),
        TrainSettings(batch_size=64, grad_accum=1, lr=1e-3, min_lr=1e-4, warmup_steps=100,
                      max_steps=1600, checkpoint_every=400, log_every=20, kmeans_init_step=100,
                      dead_code_every=100),
    ),
}
PRESETS["default-authors"] = Preset(
    "default-authors", "the default preset's sizes and schedule with the authors' computation "
    "(none of vqfast's shape remedies)",
    dict(PRESETS["default"].model, max_shape_len=None, shape_source="tokens",
         window_layout="learned"),
    replace(PRESETS["default"].train, kmeans_init_step=0, dead_code_every=0),
)


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    p = PRESETS[name]
    return Preset(p.name, p.description, dict(p.model), TrainSettings(**asdict(p.train)),
                  dict(p.loss_weights))


def apply_overrides(preset: Preset, overrides: dict) -> Preset:
    """Set model keywords, optimisation settings or loss weights by name."""
    train_names = {f.name for f in fields(TrainSettings)}
    for key, value in overrides.items():
        if key in preset.model:
            current = preset.model[key]
            preset.model[key] = (type(current)(value) if None not in (value, current)
                                 else value)
        elif key in train_names:
            setattr(preset.train, key, value)
        elif key in preset.loss_weights:
            preset.loss_weights[key] = float(value)
        else:
            known = sorted(set(preset.model) | train_names | set(preset.loss_weights))
            raise ValueError(f"unknown setting {key!r}; known settings: {', '.join(known)}")
    return preset
