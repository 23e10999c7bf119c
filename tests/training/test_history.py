"""The logged loss history of a killed and resumed run equals an uninterrupted run's, when
checkpoints fall inside a log window (the partial window travels with the checkpoint)."""

import json

from tests.training.conftest import TINY, launch, logged

RUN = TINY + ["--max-steps", "13", "--checkpoint-every", "5", "--log-every", "4"]


def test_history_survives_kill_and_resume(cache_dir, tmp_path):
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    assert launch(RUN + ["--output-dir", str(straight), "--cache-dir", str(cache_dir)],
                  tmp_path / "a.txt").code == 0
    crashed = launch(RUN + ["--output-dir", str(broken), "--cache-dir", str(cache_dir),
                            "--crash-after-step", "7"], tmp_path / "b.txt")
    assert crashed.code == 3
    resumed = launch(RUN + ["--output-dir", str(broken), "--cache-dir", str(cache_dir),
                            "--resume"], tmp_path / "c.txt")
    assert resumed.code == 0 and "(step 5)" in resumed.output, resumed.output
    a = json.loads((straight / "report.json").read_text())["history"]
    b = json.loads((broken / "report.json").read_text())["history"]
    assert [h["step"] for h in a] == [4, 8, 12, 13]
    assert logged(b) == logged(a)
    assert all("tokens" in h and 1 <= h["tokens"]["codes_used"] <= 16 for h in a)
