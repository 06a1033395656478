"""The maskopt command end to end: demo, solve and compare with TOML configs, exit codes."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys

import matplotlib.image as mpimg
import pytest
import torch
from safetensors import safe_open
from torch import nn

import maskopt as mo
from maskopt.cli import main

TINY = """
[data]
name = "digits"
samples = 64

[student]
model = "mlp"
seed = 1
kwargs = {{ in_features = 64, hidden = [16], num_classes = 10 }}

[teachers]
models = [{{ model = "mlp", kwargs = {{ in_features = 64, hidden = [32], num_classes = 10 }} }}]
epochs = 2
path = "{teachers}"

[budget]
sparsity = 0.8
scope = "layer"

[problem]
loss = "kl"
temperature = 2.0

[solve]
method = "sigmoid"
options = {{ steps = 20 }}

[compare]
methods = ["magnitude", "random", "sigmoid"]
seeds = [0, 1]
certify = false
options = {{ sigmoid = {{ steps = 20 }} }}

[ticket]
steps = 10
"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--quick", "--quiet", "--out", str(out)]) == 0
    return out


def test_demo_writes_complete_consistent_results(demo, capsys):
    for name in ("exact_layer", "student"):
        rows = list(csv.DictReader(open(demo / f"{name}.csv")))
        data = json.loads((demo / f"{name}.json").read_text())
        assert len(rows) == len(data["rows"]) >= 8
        img = mpimg.imread(demo / f"{name}.png")
        assert img.shape[0] > 100 and img.std() > 0
    exact = {r["method"]: r for r in json.loads((demo / "exact_layer.json").read_text())["rows"]}
    assert exact["exact"]["status"] == "optimal" and exact["exact"]["hamming_to_exact"] == 0
    bound = json.loads((demo / "exact_layer.json").read_text())["reference"]
    assert all(r["objective"] >= bound - 1e-6 * abs(bound) for r in exact.values())
    student = json.loads((demo / "student.json").read_text())
    assert all(0 <= r["test_acc"] <= 100 for r in student["rows"])
    with safe_open(str(demo / "masks.safetensors"), framework="pt") as f:
        methods = json.loads(f.metadata()["methods"])
        assert set(methods) == {r["method"] for r in student["rows"]}
        kept = sum(int(f.get_tensor(k).sum()) for k in f.keys() if k.startswith("hierarchy/"))
        size = sum(f.get_tensor(k).numel() for k in f.keys() if k.startswith("hierarchy/"))
    assert kept / size == pytest.approx(0.1, abs=0.002)
    # one method's masks load by name, keyed like the student's parameters
    masks = mo.MaskSet.load(demo / "masks.safetensors", method="hierarchy")
    student = mo.models.create("mlp", seed=0, in_features=64, hidden=[64], num_classes=10)
    assert masks.method == "hierarchy" and set(masks) == {n for n, _ in student.named_parameters() if "weight" in n}
    assert sum(int(m.sum()) for m in masks.values()) == kept
    mo.apply_masks(student, masks)
    with pytest.raises(ValueError, match="holds the masks of several methods .*method=NAME"):
        mo.MaskSet.load(demo / "masks.safetensors")


def write_config(tmp_path, text: str = TINY) -> str:
    path = tmp_path / "c.toml"
    path.write_text(text.format(teachers=(tmp_path / "t.safetensors").as_posix()))
    return str(path)


def test_solve_and_compare_configs(tmp_path, capsys):
    config = write_config(tmp_path)
    assert main(["solve", config, "--quiet", "--out", str(tmp_path / "s")]) == 0
    result = json.loads((tmp_path / "s" / "result.json").read_text())
    masks = mo.MaskSet.load(tmp_path / "s" / "masks.safetensors")
    assert masks.method == "sigmoid" and result["result"]["density"] == pytest.approx(masks.density)
    assert 0 <= result["result"]["test_acc"] <= 100
    assert (tmp_path / "t.safetensors").exists()  # the teachers were saved ...
    assert main(["compare", config, "--quiet", "--out", str(tmp_path / "c")]) == 0  # ... and are loaded here
    rows = list(csv.DictReader(open(tmp_path / "c" / "results.csv")))
    assert [(r["method"], r["seed"]) for r in rows] == [("magnitude", ""), ("random", "0"), ("random", "1"),
                                                       ("sigmoid", "0"), ("sigmoid", "1")]
    assert mpimg.imread(tmp_path / "c" / "results.png").std() > 0
    # the solve run's mask scores what compare's row says for the same method and seed
    from maskopt import config as cfg

    exp = cfg.build(cfg.load(config), verbose=False)
    row = next(r for r in rows if r["method"] == "sigmoid" and r["seed"] == "0")
    assert float(row["objective"]) == pytest.approx(mo.evaluate(exp.problem, masks), rel=1e-9)


@pytest.mark.parametrize("edit,message", [
    (("[problem]", "[probelm]"), "unknown section \\[probelm\\]; allowed sections: data, student"),
    (('samples = 64', 'sample = 64'), "unknown key data.sample; allowed keys in \\[data\\]: name, root"),
    (('name = "digits"', 'name = "imagenet"'), "data.name must be one of digits, mnist1d"),
    (('sparsity = 0.8', 'sparsity = "high"'), "budget.sparsity must be a int or float"),
    (('sparsity = 0.8', 'sparsity = 1.8'), "\\[budget\\]: Budget sparsity must lie in \\[0, 1\\]"),
    (('method = "sigmoid"', 'method = "magic"'), "Unknown method 'magic'"),
    (('model = "mlp"\nseed = 1', 'model = "resnet99"\nseed = 1'), "\\[student\\]: Unknown model 'resnet99'"),
    (('[budget]\nsparsity = 0.8\nscope = "layer"', ''), "missing section\\(s\\) \\[budget\\]"),
    (("in_features = 64, hidden = [16]", "in_features = 30, hidden = [16]"),
     "\\[student\\]: student cannot take the data's inputs of shape \\(64,\\)"),
    (("in_features = 64, hidden = [32]", "in_features = 30, hidden = [32]"),
     "\\[teachers\\]: teachers.models\\[0\\] cannot take the data's inputs"),
    (("seeds = [0, 1]", 'seeds = [0, "1"]'), "compare.seeds must be a list of ints"),
    (("options = {{ sigmoid", "options = {{ sigmod"), "compare.options.sigmod names no method of compare.methods"),
    (("options = {{ steps = 20 }}", 'options = {{ polish = "no" }}'), "Option 'polish' .* must be True or False"),
    (("options = {{ steps = 20 }}", 'options = {{ warm_start = "m.safetensors" }}'),
     "solve.options.warm_start takes a Python object"),
    (("steps = 10", "steps = 10\nepochs = 1"), "give ticket.epochs or ticket.steps, not both"),
    (("epochs = 2", "epochs = -1"), "teachers.epochs must be > 0"),
    (('samples = 64', 'samples = 64\nroot = "data"'), "data.root applies to data.name = 'mnist' or 'cifar10'"),
])
def test_config_errors_name_the_key_and_exit_2(tmp_path, capsys, edit, message):
    config = write_config(tmp_path, TINY.replace(*edit))
    assert main(["solve", config, "--quiet", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("maskopt: error:")
    import re

    assert re.search(message, err), err


def test_bad_input_exits_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "maskopt.cli", "demo", "--time-limit", "abc"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert "argument --time-limit: must be a number of seconds > 0; got 'abc'" in proc.stderr
    assert main(["demo", "--quick", "--time-limit", "-1", "--out", str(tmp_path / "x")]) == 2
    assert main(["solve", "any.toml", "--time-limit", "0"]) == 2  # checked for every command, before any work
    assert main(["demo", "--seed", "-1", "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()
    assert main(["solve", str(tmp_path / "missing.toml")]) == 2
    (tmp_path / "bad.toml").write_text("[data\nname=")
    assert main(["compare", str(tmp_path / "bad.toml")]) == 2


def test_config_problems_are_found_before_any_training(tmp_path, capsys):
    """A missing [solve], a teachers.path in a missing folder or naming a folder: exit 2, and no
    teacher was trained (no file written)."""
    cases = [(TINY.replace('[solve]\nmethod = "sigmoid"\noptions = {{ steps = 20 }}', ""), "solve",
              "maskopt solve needs \\[solve\\] with method = NAME"),
             (TINY.replace('path = "{teachers}"', 'path = "{teachers}.missing/t.safetensors"'), "solve",
              "its folder does not exist"),
             (TINY.replace('path = "{teachers}"', f'path = "{tmp_path.as_posix()}"'), "compare", "is a folder")]
    import re

    for text, command, message in cases:
        config = write_config(tmp_path, text)
        assert main([command, config, "--quiet", "--out", str(tmp_path / "o")]) == 2
        assert re.search(message, capsys.readouterr().err)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]


def test_internal_error_exits_1_and_ctrl_c_leaves_complete_files(tmp_path, monkeypatch, capsys):
    import matplotlib.figure

    config, out = write_config(tmp_path), tmp_path / "c"
    assert main(["compare", config, "--quiet", "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", interrupted)  # Ctrl-C while the plot is written
    assert main(["compare", config, "--quiet", "--out", str(out)]) == 130
    assert "interrupted" in capsys.readouterr().err
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(after) == set(before)  # no temporary or partial file left behind
    assert after["results.png"] == before["results.png"]  # the previous plot is intact
    assert list(csv.DictReader(open(out / "results.csv"))) and json.loads((out / "results.json").read_text())

    def broken(*args, **kwargs):
        raise RuntimeError("solver crashed")

    monkeypatch.setattr(mo, "compare", broken)
    assert main(["compare", config, "--quiet", "--out", str(out)]) == 1
    assert "maskopt: internal error: RuntimeError: solver crashed" in capsys.readouterr().err


PRUNE = """
[data]
name = "digits"

[model]
model = "mlp"
kwargs = {{ in_features = 64, hidden = [16], num_classes = 10 }}
steps = 30
lr = 0.01
path = "{path}"

[budget]
sparsity = 0.75
scope = "row"

[prune]
method = "{method}"
calibration = 200
refit = true
"""


def test_prune_config_prunes_every_layer_and_reuses_the_trained_model(tmp_path, capsys):
    config = tmp_path / "prune.toml"
    config.write_text(PRUNE.format(path=tmp_path / "model.pt", method="wanda"))
    assert main(["prune", str(config), "--quiet", "--out", str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out
    saved = (tmp_path / "model.pt").stat().st_mtime_ns
    masks = mo.MaskSet.load(tmp_path / "p" / "masks.safetensors")
    assert len(masks) == 2 and masks.density == pytest.approx(0.25, abs=0.01)
    assert all(name.removesuffix(".weight") in out for name in masks) and "test accuracy: dense" in out
    config.write_text(PRUNE.format(path=tmp_path / "model.pt", method="obs"))
    assert main(["prune", str(config), "--quiet", "--out", str(tmp_path / "q")]) == 0
    assert (tmp_path / "model.pt").stat().st_mtime_ns == saved  # loaded, not trained again
    assert (tmp_path / "q" / "layers.csv").read_text().startswith("layer,shape,method")


@pytest.mark.parametrize("edit,message", [
    (lambda t: t + "\n[student]\nmodel = \"mlp\"\n", r"maskopt prune takes sections .* remove \[student\]"),
    (lambda t: t.replace('method = "wanda"', 'loss = "l2"'), r"\[prune\] needs method"),
    (lambda t: t.replace("steps = 30", "steps = 30\nepochs = 2"), "not both"),
])
def test_prune_config_errors_exit_2(tmp_path, capsys, edit, message):
    config = tmp_path / "prune.toml"
    config.write_text(edit(PRUNE.format(path=tmp_path / "model.pt", method="wanda")))
    assert main(["prune", str(config), "--quiet", "--out", str(tmp_path / "o")]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_result_json_describes_models_and_tensors_instead_of_dumping_them():
    from maskopt.report import plain

    stats = {"model": nn.Linear(2, 2), "loss": torch.tensor(0.5), "one_shot": {0.9: mo.MaskSet(
        {"w": torch.ones(2, 4, dtype=torch.bool)})}, "steps": [1, 2]}
    out = json.loads(json.dumps(plain(stats)))
    assert out == {"model": "<Linear module: not written>", "loss": 0.5,
                   "one_shot": {"0.9": {"w": "<tensor of shape (2, 4): not written>"}}, "steps": [1, 2]}
