"""``VQShapeConfig``: the authors' 20 constructor keywords, written once with their defaults, their
checks and their names in the authors' training script (``hyper_parameters`` of their
checkpoints). ``DEFAULTS``, ``VQShape``'s signature, ``model.config`` and the checkpoint reader
derive from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

MIN_SHAPE_LEN = 1 / 64  # l_min: the shortest window a token covers (relative to the series)

# The weights of the four losses in the authors' training script (outside their model class),
# and of vqfast's scale-free shape loss (0: off, the authors' objective; see VQShape).
LOSS_WEIGHTS = dict(lambda_x=1.0, lambda_z=1.0, lambda_s=1.0, lambda_dist=0.8, lambda_s_norm=0.0)

# Where a token's code, mu and sigma come from: "tokens" (the authors: heads on the token
# embedding) or "window" (vqfast: measured on the subsequence the token's window covers).
SHAPE_SOURCES = ("tokens", "window")

# Where the windows (t, l) come from: "learned" (the authors: a head on the token embedding) or
# "grid" (vqfast, with shape_source="window": num_token windows of length max_shape_len, evenly
# spaced from the series' start to its end).
WINDOW_LAYOUTS = ("learned", "grid")


def _keyword(default, official: str | None = None, *, fallback: str | None = None,
             optional: bool = False):
    """A keyword with its default and its name in the authors' training script (``official``,
    when it differs). Checkpoints lacking the name read ``fallback`` instead, as the authors' code
    does, or, when ``optional``, keep the default."""
    return field(default=default,
                 metadata={"official": official, "fallback": fallback, "optional": optional})


@dataclass(frozen=True)
class VQShapeConfig:
    """The model's settings. Defaults: the authors' pre-training script (``pretrain.sh``), i.e.
    their released E512/K512 checkpoint (their class's own defaults cannot be built: 256 dims over
    6 heads); the same values are the ``paper`` preset of ``vqfast.presets``. Field order is the
    authors' positional order."""

    dim_embedding: int = _keyword(512)
    patch_size: int = _keyword(8)
    num_patch: int = _keyword(64)
    num_enc_head: int = _keyword(8, "num_transformer_enc_heads")
    num_enc_layer: int = _keyword(4, "num_transformer_enc_layers")
    num_tokenizer_head: int = _keyword(8, "num_tokenizer_heads",
                                       fallback="num_transformer_enc_heads")
    num_tokenizer_layer: int = _keyword(4, "num_tokenizer_layers",
                                        fallback="num_transformer_enc_layers")
    num_dec_head: int = _keyword(8, "num_transformer_dec_heads")
    num_dec_layer: int = _keyword(2, "num_transformer_dec_layers")
    num_token: int = _keyword(64)
    len_s: int = _keyword(128)
    len_input: int = _keyword(512, "normalize_length")
    s_smooth_factor: int = _keyword(1)
    num_code: int = _keyword(512)
    dim_code: int = _keyword(8)
    codebook_type: str = _keyword("standard", optional=True)
    lambda_commit: float = _keyword(0.25, "lambda_vq_commit")
    lambda_entropy: float = _keyword(0.1, "lambda_vq_entropy")
    entropy_gamma: float = _keyword(1.0)
    mask_ratio: float = _keyword(0.25, optional=True)
    # vqfast's options beyond the authors' model (None / off: their computation, bit for bit).
    max_shape_len: float | None = _keyword(None, optional=True)
    shape_source: str = _keyword("tokens", optional=True)
    window_layout: str = _keyword("learned", optional=True)

    def __post_init__(self):
        _validate(self)

    def as_dict(self) -> dict:
        return asdict(self)


def _validate(c: VQShapeConfig) -> None:
    def need(cond, msg):
        if not cond:
            raise ValueError(f"VQShape: {msg}")

    for key in ("dim_embedding", "patch_size", "num_patch", "num_token", "len_s", "len_input",
                "num_code", "dim_code", "s_smooth_factor"):
        value = getattr(c, key)
        need(int(value) == value and value >= 1, f"{key} must be a positive integer, got {value}")
    for part in ("enc", "tokenizer", "dec"):
        heads, layers = getattr(c, f"num_{part}_head"), getattr(c, f"num_{part}_layer")
        need(heads >= 1 and layers >= 1, f"num_{part}_head and num_{part}_layer must be >= 1")
        need(
            c.dim_embedding % heads == 0,
            f"dim_embedding={c.dim_embedding} is not divisible by num_{part}_head={heads} "
            "(attention splits the embedding evenly over heads)",
        )
    need(c.len_s % 16 == 0,
         f"len_s must be a multiple of 16 (the shape decoder upsamples 16x), got {c.len_s}")
    need(c.len_input % c.num_token == 0,
         f"len_input={c.len_input} must be divisible by num_token={c.num_token} (each token "
         "reconstructs len_input/num_token values)")
    step = int(c.len_input / c.num_patch)
    need(step >= 1 and c.patch_size <= c.len_input,
         f"num_patch={c.num_patch} and patch_size={c.patch_size} do not fit "
         f"len_input={c.len_input}")
    need((c.len_input - c.patch_size) // step + 1 <= c.num_patch,
         f"patch_size={c.patch_size} with step {step} gives more than num_patch={c.num_patch} "
         "patches")
    need(c.s_smooth_factor % 2 == 1, f"s_smooth_factor must be odd, got {c.s_smooth_factor}")
    need(c.codebook_type == "standard",
         f"codebook_type={c.codebook_type!r} is not supported; vqfast implements the authors' "
         "'standard' Euclidean codebook (their 'vqtorch' option needs an external library)")
    need(0 <= c.mask_ratio < 1, f"mask_ratio must be in [0, 1), got {c.mask_ratio}")
    need(c.lambda_entropy >= 0, "lambda_entropy must be >= 0")
    need(c.shape_source in SHAPE_SOURCES,
         f"shape_source must be one of {SHAPE_SOURCES}, got {c.shape_source!r}")
    need(c.window_layout in WINDOW_LAYOUTS,
         f"window_layout must be one of {WINDOW_LAYOUTS}, got {c.window_layout!r}")
    if c.window_layout == "grid":
        need(c.shape_source == "window" and c.max_shape_len is not None,
             "window_layout='grid' places windows of length max_shape_len whose code, mu and "
             "sigma are measured on the series: set shape_source='window' and max_shape_len, "
             "or window_layout='learned' for the tokenizer's windows (got shape_source="
             f"{c.shape_source!r}, max_shape_len={c.max_shape_len!r})")
    need(c.max_shape_len is None or MIN_SHAPE_LEN < c.max_shape_len <= 1,
         f"max_shape_len must be None (the authors' windows, up to the series' end) or in "
         f"({MIN_SHAPE_LEN:g}, 1], got {c.max_shape_len!r}")


DEFAULTS = VQShapeConfig().as_dict()
