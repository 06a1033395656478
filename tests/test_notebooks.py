"""The notebooks in notebooks/ run top to bottom at their QUICK settings.

Each notebook keeps every knob in its first code cell, with ``QUICK = False`` and an
``OUT_DIR``; the test switches QUICK on, points OUT_DIR (and the kernel's working
directory) into tmp_path, executes the notebook with nbclient and checks the key outputs.
The kernel runs torch single-threaded (OMP_NUM_THREADS=1): on a CPU shared with other jobs
torch's thread pool oversubscribes it and small models train many times slower.
The stored notebooks must carry no outputs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = ["1_exact_vs_relaxed.ipynb", "2_pytorch_pipeline.ipynb", "3_sparsity_accuracy_mnist1d.ipynb"]


def _first_code_cell(nb):
    return next(c for c in nb.cells if c.cell_type == "code")


def run_notebook(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, int, Path]:
    """Execute notebook ``name`` at QUICK settings; returns (its stdout, number of inline
    PNG images, its OUT_DIR)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # inherited by the kernel process
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    first = _first_code_cell(nb)
    out_dir = tmp_path / "out"
    first.source = first.source.replace("QUICK = False", "QUICK = True", 1) + f"\nOUT_DIR = {str(out_dir)!r}\n"
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError when a cell fails
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    errors = [o for o in outputs if o.output_type == "error"]
    assert not errors, errors
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream" and o.get("name") == "stdout")
    images = sum("image/png" in o.get("data", {}) for o in outputs)
    return text, images, out_dir


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_stored_clean_with_settings_first(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert nb.cells[0].cell_type == "markdown"
    first = _first_code_cell(nb)
    assert "QUICK = False" in first.source and "OUT_DIR = " in first.source
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name} is stored with outputs"


def _png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_exact_vs_relaxed(tmp_path, monkeypatch):
    text, images, out = run_notebook(NAMES[0], tmp_path, monkeypatch)
    for method in ("exact", "sigmoid", "anneal", "ste", "hierarchy", "magnitude", "snip", "random"):
        assert f"\n{method} " in text
    assert text.count("hamming_to_exact") == 2  # the two comparison tables
    assert text.count("reference: proven lower bound") == 2
    assert "Hamming(exact, planted) =" in text and "proven bound:" in text and "above the optimum" in text
    _png(out / "layerwise.png")
    _png(out / "distill.png")
    assert images >= 4


def test_pytorch_pipeline(tmp_path, monkeypatch):
    text, _, out = run_notebook(NAMES[1], tmp_path, monkeypatch)
    assert "hierarchy ticket" in text and "random ticket" in text and "dense" in text
    assert "all zero: True" in text and "all zero: False" not in text
    assert "equal to the saved mask: True" in text
    assert "masks of the restored model equal the file: True" in text
    assert (out / "mask.safetensors").stat().st_size > 0 and (out / "ticket.pt").stat().st_size > 0
    assert "state_dict keys: ['0.bias', '0.weight', '2.bias', '2.weight']" in text


def test_sparsity_accuracy_mnist1d(tmp_path, monkeypatch):
    text, images, out = run_notebook(NAMES[2], tmp_path, monkeypatch)
    assert "sparsity 0.9\n" in text and "test_acc" in text and "dense student" in text
    assert (out / "sparsity_0.9.csv").is_file()
    assert "× the ticket's training" in text
    for method in ("magnitude", "wanda", "obs", "swap"):  # post-training pruning, with and without refit
        assert f"{method:<10} refit=False" in text and f"{method:<10} refit=True " in text
    assert "refit_objective" in text
    _png(out / "tradeoff.png")
    assert images >= 1
