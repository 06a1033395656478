"""Tables and result files: aligned text, CSV and JSON, written atomically."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import stat
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.6g}"
    return str(value)


def format_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """Rows as an aligned text table with the given columns (None shown as '-')."""
    cells = [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [line.format(*columns), line.format(*("-" * w for w in widths))]
    out += [line.format(*row) for row in cells]
    return "\n".join(s.rstrip() for s in out)


def format_markdown(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """Rows as a GitHub-flavoured markdown table (None shown as '-')."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def _file_mode(path: Path) -> int:
    """Permission bits for ``path``: those of the file it replaces, else what ``open`` would
    give a new file (0o666 less the umask); ``mkstemp`` alone would leave 0o600."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success flush it to disk and move it onto
    ``path`` with ``os.replace``, on any error (or Ctrl-C) delete it. Readers see the old file
    or the complete new one, never a partial one; the file keeps the permissions of the one it
    replaces (a new one gets the umask's)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, _file_mode(path))
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # the data is on disk before the name points at it
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)


def write_csv(path: str | os.PathLike, rows: Sequence[dict], columns: Sequence[str]) -> None:
    """Rows as CSV (header = columns; None written as an empty cell), atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows([{c: ("" if r.get(c) is None else r.get(c)) for c in columns} for r in rows])
    atomic_write_text(path, buf.getvalue())


def _finite(value):
    """``value`` with every non-finite float as the string "inf", "-inf" or "nan" (JSON has no
    such numbers; Python's json would write the non-standard Infinity/NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def read_tagged(path: str | os.PathLike, fmt: str, what: str) -> tuple[dict, dict]:
    """(tensors, metadata) of a safetensors file whose metadata ``format`` is ``fmt``; a
    missing, unreadable or other file raises ValueError naming ``what`` it should be."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("format") != fmt:
                raise ValueError(f"{path} is not a {what} (format {meta.get('format')!r}).")
            return {k: f.get_tensor(k) for k in f.keys()}, meta
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path} is not a readable {what} ({type(err).__name__}: {err}).") from err


def plain(value):
    """``value`` for a JSON record: models and tensors (e.g. a training method's trained
    network in ``res.stats["model"]``) become a short description, mappings and sequences are
    walked; everything else is kept."""
    import torch

    if isinstance(value, torch.nn.Module):
        return f"<{type(value).__name__} module: not written>"
    if isinstance(value, torch.Tensor):
        return f"<tensor of shape {tuple(value.shape)}: not written>" if value.numel() > 1 else value.item()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def write_json(path: str | os.PathLike, data) -> None:
    """``data`` as indented standard JSON (non-finite floats as strings, see :func:`_finite`),
    atomically."""
    atomic_write_text(path, json.dumps(_finite(data), indent=2, default=str, allow_nan=False) + "\n")
