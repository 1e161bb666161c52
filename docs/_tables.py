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


def _inline(text: str) -> str:
    """Markdown inline markup as reST: links as their text, ``|`` (not a substitution)."""
    text = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r"\1 (``\2``)", text)
    return text.replace("|", "\\|")


def _csv(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue()


def _is_table_row(line: str) -> bool:
    text = line.strip()
    return len(text) > 1 and text.startswith("|") and text.endswith("|")


def markdown_to_rst(markdown: str, out: Path, stem: str) -> str:
    """reST for one report; its tables are written beside it as ``{stem}_{i}.csv``."""
    blocks, table, paragraph = [], [], []
    code = None  # lines of a fenced code block being read

    def flush() -> None:
        if table:
            name = f"{stem}_{len(blocks)}.csv"
            (out / name).write_text(_csv(table))
            blocks.append(
                f".. csv-table::\n   :file: {name}\n   :header-rows: 1\n   :class: bench\n"
            )
            table.clear()
        if paragraph:
            blocks.append("\n".join(paragraph) + "\n")
            paragraph.clear()

    for line in markdown.splitlines() + [""]:
        if line.strip().startswith("```"):
            flush()
            if code is None:
                code = []
            else:
                blocks.append("::\n\n" + "\n".join(f"   {c}" for c in code) + "\n")
                code = None
            continue
        if code is not None:
            code.append(line)
            continue
        if _is_table_row(line) and not paragraph:
            if not re.fullmatch(r"\|?(\s*:?-+:?\s*\|)+\s*:?-*:?\s*", line.strip()):
                table.append(_cells(line))
            continue
        image = re.fullmatch(r"!\[(.*)\]\((.*)\)", line.strip())
        if not line.strip() or line.lstrip().startswith("#") or image:
            flush()
        if image:
            blocks.append(f".. image:: /../{image.group(2)}\n   :alt: {image.group(1)}\n")
        elif line.lstrip().startswith("#"):
            blocks.append(f"**{line.strip().lstrip('#').strip()}**\n")
        elif line.strip():
            starts_list = re.match(r"([-*]|\d+\.) ", line) is not None
            if table or (starts_list and paragraph and not re.match(r"[-*] ", paragraph[0])):
                flush()  # reST wants a blank line before a list that follows a paragraph
            paragraph.append(_inline(line.rstrip()))
    return "\n".join(blocks)


def write_reports(root: Path, docs: Path, reports: dict[str, str]) -> None:
    """``reports``: stem -> path of a ``table.md`` under ``root``; writes
    ``docs/_generated/{stem}.rst`` (and its csv files) for ``.. include::``."""
    out = docs / "_generated"
    out.mkdir(exist_ok=True)
    for stem, path in reports.items():
        rst = markdown_to_rst((root / path).read_text(), out, stem)
        (out / f"{stem}.rst").write_text(rst)
