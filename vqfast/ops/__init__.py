"""vqfast's numerical ops: registered ``torch.library`` custom ops with pure-torch references.

Every op takes ``backend="auto" | "cpp" | "triton" | "reference"`` (``None``: the environment
variable ``VQFAST_BACKEND``, default ``auto``). ``backends()`` says what ``auto`` runs here.
The entry points check their inputs (NaN or Inf raise ``NonFiniteInputError`` naming where) so that
every backend gives the same answer or the same error.
"""

from vqfast.ops._backend import BACKENDS, BackendUnavailableError, backends
from vqfast.ops._common import NonFiniteInputError
from vqfast.ops.code_histogram import code_histogram, code_histogram_ref
from vqfast.ops.dropout import dropout, dropout_ref
from vqfast.ops.extract_subsequence import extract_subsequence, extract_subsequence_ref
from vqfast.ops.nearest_code import nearest_code, nearest_code_ref
from vqfast.ops.vq_loss import vq_loss, vq_loss_ref

__all__ = [
    "BACKENDS",
    "BackendUnavailableError",
    "NonFiniteInputError",
    "backends",
    "code_histogram",
    "code_histogram_ref",
    "dropout",
    "dropout_ref",
    "extract_subsequence",
    "extract_subsequence_ref",
    "nearest_code",
    "nearest_code_ref",
    "vq_loss",
    "vq_loss_ref",
]
