"""Benchmark reports as reStructuredText: the harness writes ``table.md`` from
``results.json`` (``python -m skcds.bench --report-only`` regenerates it); this turns each
one into text and real tables (``csv-table``) under ``docs/_generated/`` at build time, so a
browser shows tables, not Markdown pipes in a code block."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _csv(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue()


def markdown_to_rst(markdown: str, out: Path, stem: str) -> str:
    """reST for one report; its tables are written beside it as ``{stem}_{i}.csv``."""
    blocks, table, lines = [], [], markdown.splitlines() + [""]
    for line in lines:
        if line.lstrip().startswith("|"):
            if not re.fullmatch(r"\|?(\s*:?-+:?\s*\|)+\s*:?-*:?\s*", line.strip()):
                table.append(_cells(line))
            continue
        if table:
            name = f"{stem}_{len(blocks)}.csv"
            (out / name).write_text(_csv(table))
            blocks.append(
                f".. csv-table::\n   :file: {name}\n   :header-rows: 1\n   :class: bench\n"
            )
            table = []
        text = line.strip()
        if text.startswith("#"):
            blocks.append(f"**{text.lstrip('#').strip()}**\n")
        elif text:
            blocks.append(text.replace("*", "\\*") + "\n")
    return "\n".join(blocks)


def write_reports(root: Path, docs: Path, reports: dict[str, str]) -> None:
    """``reports``: stem -> path of a ``table.md`` under ``root``; writes
    ``docs/_generated/{stem}.rst`` (and its csv files) for ``.. include::``."""
    out = docs / "_generated"
    out.mkdir(exist_ok=True)
    for stem, path in reports.items():
        rst = markdown_to_rst((root / path).read_text(), out, stem)
        (out / f"{stem}.rst").write_text(rst)
