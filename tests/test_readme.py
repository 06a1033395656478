"""Docs that cannot go stale: every README Python example runs, and the README's two
set-up commands are exactly the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
PY_BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)
BASH_BLOCKS = re.findall(r"```bash\n(.*?)```", README, flags=re.S)


@pytest.mark.parametrize("code", PY_BLOCKS, ids=[f"example{i}" for i in range(len(PY_BLOCKS))])
def test_readme_example_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})


def test_readme_has_two_setup_commands_run_by_ci():
    commands = [b.strip() for b in BASH_BLOCKS]
    assert commands == ['pip install -e . && maskopt demo', 'pip install -e ".[dev]" && python -m pytest']
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert [line for line in ci if line.startswith("pip ")] == commands
