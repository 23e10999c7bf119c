"""README.md's two set-up commands stay true: they open the README, and CI runs the second."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def commands():
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash", 1)[1].split("```", 1)[0]
    return [line for line in block.strip().splitlines() if not line.startswith("#")]


def test_readme_opens_with_install_and_main_job_then_install_and_tests():
    first, second = commands()
    assert (ROOT / "README.md").read_text().lstrip().startswith("# vqfast\n\n```bash")
    assert first.startswith("pip install torch==") and "accelerate launch vqfast/train.py" in first
    assert second.startswith("pip install torch==") and "pytest" in second


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert commands()[1] in ci
