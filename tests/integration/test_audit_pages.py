"""The audit's HTML as a manager sees it, in headless Chromium: a 20,000-record ledger over
two weeks and a 10-record one. Checked from the rendered page's geometry: no axis label
overlaps another or leaves its chart, every series drawn has a labelled legend entry, every
team has a headline, and every figure in the table is in the page's glossary.

With CASCADE_SCREENSHOTS=DIR the PNGs are kept there (docs/audit-20k.png and
docs/audit-10.png were made so)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.browser import open_page

ROOT = Path(__file__).resolve().parents[2]
AUDIT = [sys.executable, "-m", "router", "audit"]
_MONEY = r"-?\$(\d{1,3}(,\d{3})*\.\d\d|0\.0\d*[1-9]\d{0,2})"
_SHARE = r"(\d+|\d\.\d)%|—"
FORMATS = {
    "requests": r"\d{1,3}(,\d{3})*",
    "refused": r"\d{1,3}(,\d{3})*",
    "spent": _MONEY,
    "saved": _MONEY,
    "saved %": r"-?\d+%|—",
    "escalated": _SHARE,
    "kept local": _SHARE,
    "local agrees (95%)": rf"({_SHARE}) \([\d.]+-({_SHARE})\) n=[\d,]+( below target .*)?|—",
    "p95 ms": r"\d{1,3}(,\d{3})*|\d\.\d|—",
}

GEOMETRY = """(() => {
  const overlaps = [], outside = [], unlabelled = [], empty = [];
  const hit = (a, b) => a.left < b.right - 0.5 && b.left < a.right - 0.5
                        && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5;
  document.querySelectorAll('svg.chart').forEach((svg, n) => {
    const box = svg.getBoundingClientRect();
    const ticks = [...svg.querySelectorAll('text.tick')];
    ticks.forEach((t, i) => {
      const a = t.getBoundingClientRect();
      if (a.left < box.left - 0.5 || a.right > box.right + 0.5
          || a.top < box.top - 0.5 || a.bottom > box.bottom + 0.5) outside.push(t.textContent);
      ticks.slice(i + 1).forEach(u => {
        if (hit(a, u.getBoundingClientRect())) overlaps.push(t.textContent + ' / ' + u.textContent);
      });
    });
    const figure = svg.closest('figure');
    const labels = [...figure.querySelectorAll('.legend .item')].map(i => i.textContent.trim());
    labels.forEach(l => { if (!l || l === '-') empty.push(n); });
    new Set([...svg.querySelectorAll('.mark')].map(m => m.dataset.series)).forEach(s => {
      if (!labels.includes(s)) unlabelled.push(s);
    });
  });
  return {overlaps, outside, unlabelled, empty,
          xticks: document.querySelectorAll('text.tick.x').length};
})()"""

TEXTS = {
    "headlines": "[...document.querySelectorAll('ul.headline li')].map(li => li.textContent)",
    "glossary": "[...document.querySelectorAll('dl.glossary dt')].map(dt => dt.textContent)",
    "rows": "[...document.querySelectorAll('table')[0].querySelectorAll('tr')]"
    ".map(tr => [...tr.children].map(c => c.textContent))",
    "drawn": "[...document.querySelectorAll('svg.chart')].map(c => c.dataset.drawn)",
}


def _ledger(path: Path, records: int, days: int) -> str:
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "gen_ledger.py"),
            "--records",
            str(records),
            "--days",
            str(days),
            "--out",
            str(path),
        ],
        check=True,
        timeout=300,
    )
    return f"sqlite:///{path}"


@pytest.mark.parametrize(("records", "days", "name"), [(20_000, 14, "20k"), (10, 1, "10")])
def test_audit_page_reads_cleanly(tmp_path: Path, records: int, days: int, name: str) -> None:
    ledger = _ledger(tmp_path / "ledger.db", records, days)
    page = tmp_path / "audit.html"
    subprocess.run(
        [*AUDIT, "--ledger", ledger, "--format", "html", "--out", str(page)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    shot = tmp_path / f"audit-{name}.png"
    result = open_page(page, {"geometry": GEOMETRY, **TEXTS}, shot)
    assert result.console_errors == []
    geometry = result.values["geometry"]
    assert geometry["xticks"] > 0
    assert geometry["overlaps"] == [], "axis labels overlap"
    assert geometry["outside"] == [], "axis labels leave their chart"
    assert geometry["unlabelled"] == [] and geometry["empty"] == [], "a series without a label"
    assert set(result.values["drawn"]) == {"yes"}

    headlines = result.values["headlines"]
    assert headlines and all(" spent $" in line for line in headlines)
    if records > 1000:  # the big ledger has refusals and shadow checks to report
        assert any(" refused (" in line for line in headlines)
        assert any("shadow checks cost $" in line for line in headlines)
    header, *rows = result.values["rows"]
    assert set(header[1:]) <= set(result.values["glossary"])  # every figure explained
    assert len(rows) >= 2  # a group and the total
    for row in rows:  # money to cents (micro-dollars to 3 digits), whole counts, percents
        for title, text in zip(header, row, strict=True):
            assert re.fullmatch(FORMATS.get(title, r".+"), text), (title, text)
    if target := os.environ.get("CASCADE_SCREENSHOTS"):
        shutil.copy(shot, Path(target) / shot.name)


def test_the_terminal_table_fits_a_terminal(tmp_path: Path) -> None:
    """The default table is narrow: at 120 columns no row wraps (a quality cell once took
    six lines); `--columns all` asks for the rest."""
    ledger = _ledger(tmp_path / "ledger.db", 2_000, 3)
    audit = [sys.executable, "-m", "router", "audit", "--ledger", ledger]
    env = {**os.environ, "COLUMNS": "120"}
    table = subprocess.run(audit, check=True, capture_output=True, env=env, timeout=120)
    lines = table.stdout.decode().splitlines()
    assert all(len(line) <= 120 for line in lines)
    rows = [line for line in lines if line.startswith("│ ")]
    teams = [row.split("│")[1].strip() for row in rows]
    assert {"search", "support", "all"} <= set(teams)
    assert "" not in teams[: teams.index("all")], "a group's row wrapped onto a second line"
    assert any(line.startswith("• search spent $") for line in lines)

    wide = subprocess.run(
        [*audit, "--columns", "requests,prompt_tokens,latency_p99"],
        check=True,
        capture_output=True,
        env=env,
        timeout=120,
    ).stdout.decode()
    assert "prompt tok" in wide and "p99 ms" in wide and "saved %" not in wide
    refused = subprocess.run(
        [*audit, "--columns", "requests,nope"],
        check=False,
        capture_output=True,
        env=env,
        timeout=120,
    )
    assert refused.returncode == 2 and b"unknown nope" in refused.stderr
