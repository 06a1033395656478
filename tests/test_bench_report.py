"""The benchmark docs regenerate from their results: every generated block of
docs/benchmarks/*.md and BENCHMARKS.md's goals table equal what ``benchmarks/report.py``
builds from benchmarks/results/*.json, byte for byte; the index stays short."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
report = pytest.importorskip("report")


@pytest.fixture(scope="module")
def rendered() -> dict[Path, str]:
    with pytest.MonkeyPatch.context() as mp:  # the committed results and pages, whatever the environment says
        mp.delenv("MASKOPT_BENCH_RESULTS", raising=False)
        mp.delenv("MASKOPT_BENCH_DOCS", raising=False)
        return report.render()


def test_every_page_and_the_index_regenerate_byte_for_byte(rendered):
    assert ROOT / "BENCHMARKS.md" in rendered and len(rendered) >= 6
    stale = [str(p.relative_to(ROOT)) for p, text in rendered.items() if not p.exists() or p.read_text() != text]
    assert stale == [], f"run `python benchmarks/report.py`: {stale} differ from their results"


def test_the_index_is_short_and_links_every_page(rendered):
    index = rendered[ROOT / "BENCHMARKS.md"]
    # short: the page list and one row per goal (about 1 KB per page with its goals; nine pages,
    # of which two still wait for their GPU rows)
    assert len(index.encode()) < 12_000
    pages = {p.name for p in rendered if p.parent.name == "benchmarks"}
    assert pages == {Path(link).name for link in re.findall(r"\]\((docs/benchmarks/[a-z_]+\.md)\)", index)}


def test_goal_rows_link_to_blocks_that_exist(rendered):
    index = rendered[ROOT / "BENCHMARKS.md"]
    for page, block in re.findall(r"\(docs/benchmarks/([a-z_]+)\.md#([a-z0-9_]+)\)", index):
        assert f"<!-- {block}:start -->" in rendered[ROOT / "docs" / "benchmarks" / f"{page}.md"], (page, block)


def test_titles_describe_experiments_not_tracker_history(rendered):
    for path, text in rendered.items():
        titles = [line for line in text.splitlines() if line.startswith("#")]
        assert not [t for t in titles if re.search(r"\bissue\b|\(#?\d+\)|rerun|run ?2", t, re.I)], path
        assert len(titles) == len(set(titles)), f"repeated titles in {path}"
