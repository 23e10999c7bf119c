"""``python -m vqfast.probe`` and the ``vqfast-probe`` command, and the probe's names for existing
imports; the probes live in :mod:`vqfast.evaluation.probe`."""

from vqfast.evaluation import probe as _probe
from vqfast.evaluation.probe import *  # noqa: F403

__all__ = _probe.__all__

if __name__ == "__main__":
    raise SystemExit(_probe.main())
