"""The dependency rule of DESIGN.md, enforced: ``maskopt.solvers`` and ``maskopt.models``
never import the rest of maskopt (checked in the source, statically), and importing an
engine loads none of the library's modules (checked at run time, in a fresh interpreter)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENGINES = {"solvers": "maskopt.solvers", "models": "maskopt.models"}
ALLOWED = tuple(ENGINES.values())


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import statement in ``path`` (relative imports resolved)."""
    package = path.relative_to(ROOT).with_suffix("").parts
    dotted = [ENGINES[package[0]].split(".")[0], ENGINES[package[0]].split(".")[1], *package[1:]]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = dotted[: len(dotted) - node.level]
                if path.name == "__init__.py":
                    base = dotted[: len(dotted) - node.level + 1]
                out.append((node.lineno, ".".join([*base, *([node.module] if node.module else [])])))
            else:
                out.append((node.lineno, node.module or ""))
    return out


def library_imports(path: Path) -> list[str]:
    """Imports of ``path`` that reach maskopt outside the engines ('maskopt', 'maskopt.api', ...)."""
    bad = []
    for line, name in imported_modules(path):
        if (name == "maskopt" or name.startswith("maskopt.")) and not name.startswith(ALLOWED):
            bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return bad


def engine_files() -> list[Path]:
    return sorted(p for folder in ENGINES for p in (ROOT / folder).rglob("*.py"))


def test_the_scan_sees_every_engine_file_and_catches_a_wrong_import(tmp_path):
    assert len(engine_files()) > 20
    probe = ROOT / "solvers" / "_layering_probe.py"
    for text in ("import maskopt.api\n", "from maskopt import relax\n", "from maskopt.budget import Budget\n"):
        probe.write_text(text)
        try:
            assert library_imports(probe), text
        finally:
            probe.unlink()
    probe.write_text("from maskopt.solvers.topk import Units\nfrom maskopt.models import mlp\n")
    try:
        assert library_imports(probe) == []
    finally:
        probe.unlink()


def test_engines_never_import_the_library():
    bad = [line for path in engine_files() for line in library_imports(path)]
    assert bad == [], "maskopt.solvers/models must not import the rest of maskopt:\n" + "\n".join(bad)


@pytest.mark.parametrize("engine", ["maskopt.solvers.exact.layerwise", "maskopt.solvers.exact.network",
                                    "maskopt.solvers.relax", "maskopt.solvers.unrolled", "maskopt.models"])
def test_importing_an_engine_loads_no_library_module(engine):
    code = (f"import sys, {engine}\n"
            "print(sorted(m for m in sys.modules if m.startswith('maskopt') and "
            "not m.startswith(('maskopt.solvers', 'maskopt.models')) and m != 'maskopt'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_library_loads_its_names_on_first_use():
    code = ("import sys, maskopt as mo\n"
            "before = sorted(m for m in sys.modules if m.startswith('maskopt.'))\n"
            "mo.Budget(sparsity=0.5); names = mo.methods()\n"
            "print(before, 'maskopt.relax' in sys.modules, 'exact' in names, mo.compare.__name__, mo.train.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] True True compare train", out.stdout
