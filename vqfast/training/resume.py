"""What a resumed run must share with the run it continues: the settings that change the
computation, saved with every checkpoint and compared on ``--resume``."""

from __future__ import annotations

import json
from dataclasses import asdict, is_dataclass

# Settings that change only when things are logged or saved, not what is computed.
NOT_COMPARED = ("checkpoint_every", "log_every", "epochs")


class ResumeSettingsError(ValueError):
    """``--resume`` with settings other than the checkpoint's, without ``--resume-override``."""


def run_settings(preset, *, seed: int, datasets, how: str, balance: bool, plan,
                 num_processes: int) -> dict:
    """The settings of a run as one flat, JSON-ready dict: every model keyword, optimisation
    setting and loss weight by its own name, and the data, seed and text options."""
    settings = {"preset": preset.name, **preset.model}
    settings.update({k: v for k, v in asdict(preset.train).items() if k not in NOT_COMPARED})
    settings.update(preset.loss_weights)
    settings.update(seed=seed, dataset=[str(d) for d in datasets], how=how, balance=balance,
                    num_processes=num_processes)
    if is_dataclass(plan):
        text = {k: v for k, v in asdict(plan).items() if k != "cache_dir"}
        settings.update({f"text_{k}" if not k.startswith(("text", "distill", "align")) else k: v
                         for k, v in text.items()})
    return json.loads(json.dumps(settings, default=str))


def differences(saved: dict, current: dict) -> dict[str, dict]:
    """``{name: {"checkpoint": saved value, "now": current value}}`` for every setting that
    differs (one missing on either side counts)."""
    out = {}
    for key in sorted(set(saved) | set(current)):
        if saved.get(key) != current.get(key):
            out[key] = {"checkpoint": saved.get(key), "now": current.get(key)}
    return out


def refuse(differ: dict[str, dict], checkpoint) -> ResumeSettingsError:
    listed = "; ".join(f"{k}: {v['checkpoint']!r} in the checkpoint, {v['now']!r} now"
                       for k, v in differ.items())
    return ResumeSettingsError(
        f"--resume: {checkpoint} was made with other settings ({listed}). Pass the run's own "
        "options, or add --resume-override to continue with the new ones (the report records "
        "both)")
