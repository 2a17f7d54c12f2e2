"""Self-contained HTML report (placeholder until the plotting helper lands)."""

from __future__ import annotations

import html
import json
from typing import Any


def render_html(report: dict[str, Any]) -> str:
    body = html.escape(json.dumps(report, indent=2))
    return f"<!doctype html><html><body><pre>{body}</pre></body></html>\n"
