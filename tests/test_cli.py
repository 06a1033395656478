"""The maskopt command end to end."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import maskopt as mo
from maskopt.cli import main


def test_demo_quick_writes_consistent_results(tmp_path, capsys):
    out = tmp_path / "res"
    assert main(["demo", "--quick", "--quiet", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "bruteforce" in printed and "exact" in printed
    rows = list(csv.DictReader(open(out / "results.csv")))
    data = json.loads((out / "results.json").read_text())
    assert len(rows) == len(data["rows"]) == 8
    for loss in ("l1", "l2"):
        by = {r["method"]: r for r in rows if r["loss"] == loss}
        exact, brute = float(by["exact"]["objective"]), float(by["bruteforce"]["objective"])
        assert abs(exact - brute) <= 1e-4 * max(1.0, brute)
        assert float(by["exact"]["bound"]) <= brute + 1e-6
        assert float(by["magnitude"]["objective"]) >= float(by["exact"]["bound"])
        # the saved masks score what the table says
        prob, _ = mo.data.planted_layerwise(n_samples=24, n_in=12, density=0.25, noise=0.1, seed=0, loss=loss)
        for method, row in by.items():
            masks = mo.MaskSet.load(out / f"masks_{loss}_{method}.safetensors")
            assert masks.method == method
            assert abs(mo.evaluate(prob, masks) - float(row["objective"])) <= 1e-9 * max(1.0, float(row["objective"]))


def test_bad_input_exits_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "maskopt.cli", "demo", "--time-limit", "abc"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert "invalid float value" in proc.stderr
    assert main(["demo", "--quick", "--time-limit", "-1", "--out", str(tmp_path / "x")]) == 2
