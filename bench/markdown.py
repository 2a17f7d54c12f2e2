"""Each benchmark owns one marked section of ``docs/benchmarks.md`` and rewrites only it."""

from __future__ import annotations

from pathlib import Path


def markers(name: str) -> tuple[str, str]:
    """``(begin, end)`` HTML comments delimiting benchmark ``name``'s section."""
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def write_section(path: Path, name: str, section: str) -> None:
    """Replace ``name``'s marked section of ``path`` (or append it), keeping the rest."""
    begin, end = markers(name)
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n\n"
    start, stop = text.find(begin), text.find(end)
    if start != -1 and stop > start:
        text = text[:start] + section + text[stop + len(end) :].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
