"""Self-contained HTML report: one file, inline SVG drawn by hand, no scripts, no assets.

The report has to open anywhere (a CI artifact, an air-gapped desk, an e-mail attachment),
so nothing is fetched and nothing runs: plots are static SVG built by the small pure helpers
below. Every string that comes from the report dict is escaped, because member names,
strategy reasons and library names are user- or environment-controlled.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Marker",
    "Series",
    "describe_objective",
    "fmt_metric",
    "fmt_num",
    "fmt_pct",
    "linear_ticks",
    "log_ticks",
    "render_html",
    "svg_bar_chart",
    "svg_line_plot",
]

BLUE = "#1f6feb"
ORANGE = "#e8590c"
RED = "#c92a2a"
GREY = "#868e96"
_GRID = "#e9ecef"
_AXIS = "#495057"

_WIDTH, _HEIGHT = 460, 300
_LEFT, _RIGHT, _TOP, _BOTTOM = 58, 16, 14, 40
_LEGEND = 20
_CHAR_PX = 6.6  # rough width of an 11px sans-serif glyph, for label layout only
_DASH = "—"

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d2330;
max-width:1000px;margin:1.5rem auto;padding:0 1rem}
h1{font-size:1.4rem;margin:0 0 .5rem}
h2{font-size:1.1rem;margin:1.6rem 0 .5rem;border-bottom:1px solid #dde1e7;padding-bottom:.2rem}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;margin:.3rem 0}
th,td{padding:.25rem .6rem;border-bottom:1px solid #eceff3;text-align:left;vertical-align:top}
th{font-weight:600;color:#495057}
td.num{text-align:right}
tr.chosen{background:#fff4e0;font-weight:600}
table.kv th{width:12rem}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(460px,1fr));gap:1rem 1.5rem}
figure{margin:0}
figcaption{font-size:12px;color:#5b6472;max-width:460px}
.note{color:#5b6472;font-size:13px}
.warn{background:#fff4e0;border-left:3px solid #e8590c;padding:.4rem .8rem}
.warn ul{margin:.2rem 0;padding-left:1.2rem}
svg{max-width:100%;height:auto}
svg text{font:11px system-ui,sans-serif;fill:#343a40}
"""


# --------------------------------------------------------------------------- formatting


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _finite(value: object) -> float | None:
    """``value`` as a float, or None for None, NaN, infinities and non-numbers.

    JSON reports carry all of these (e.g. infeasible thresholds are NaN on the curve).
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def fmt_num(value: object, digits: int = 4) -> str:
    """Compact number: ints with separators, floats to ``digits`` significant digits."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    number = _finite(value)
    return _DASH if number is None else f"{number:.{digits}g}"


def fmt_metric(value: object, decimals: int = 4) -> str:
    """Objective values: fixed decimals for [0, 1]-like scores so columns line up."""
    number = _finite(value)
    if number is None:
        return _DASH
    return f"{number:.{decimals}f}" if abs(number) < 10 else fmt_num(number, decimals + 2)


def fmt_pct(value: object) -> str:
    """A rate in percent to 3 significant digits (rare rates need the significant ones)."""
    number = _finite(value)
    return _DASH if number is None else f"{100 * number:.3g}%"


# --------------------------------------------------------------------------- axes


def linear_ticks(lo: float, hi: float, count: int = 5) -> tuple[float, float, list[float]]:
    """A padded range and round ticks covering ``[lo, hi]``.

    Among 1-2-2.5-5 steps giving ``4 .. count + 2`` ticks, the one wasting least room wins
    (ties: fewer ticks), so a curve peaking at 0.46 gets 0-0.5 rather than 0-0.6.

    Returns
    -------
    ``(axis_lo, axis_hi, ticks)`` where the ends are tick multiples, so the frame is ticked.
    """
    if not hi > lo:
        pad = abs(lo) * 0.1 or 0.5
        lo, hi = lo - pad, hi + pad
    magnitude = 10.0 ** math.floor(math.log10((hi - lo) / max(count - 1, 1)))
    candidates = []
    for step in (m * magnitude * f for f in (0.1, 1.0, 10.0) for m in (1.0, 2.0, 2.5, 5.0)):
        first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
        n = last - first + 1
        # Span rounded in units of the magnitude so float noise cannot break ties.
        span = round((last - first) * step / magnitude, 6)
        candidates.append((not 4 <= n <= count + 2, span, n, step))
    step = min(candidates)[3]
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    ticks = [round(k * step, 12) for k in range(first, last + 1)]
    return ticks[0], ticks[-1], ticks


def log_ticks(lo: float, hi: float, max_ticks: int = 7) -> tuple[float, float, list[float]]:
    """Whole-decade range and ticks covering ``[lo, hi]`` (both must be positive)."""
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    b = max(b, a + 1)
    stride = math.ceil((b - a) / (max_ticks - 1))
    b = a + stride * math.ceil((b - a) / stride)
    ticks = [10.0**k for k in range(a, b + 1, stride)]
    return ticks[0], ticks[-1], ticks


def _tick_label(value: float, ticks: Sequence[float], log: bool) -> str:
    if log:
        k = round(math.log10(value))
        return f"{value:g}" if -3 <= k <= 3 else f"1e{k}"
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    if abs(step * 10**decimals - round(step * 10**decimals)) > 1e-6:
        decimals += 1  # steps like 0.25 need one digit more than their magnitude says
    return f"{value:.{decimals}f}" if decimals <= 6 else f"{value:.3g}"


@dataclass(frozen=True)
class _Scale:
    lo: float
    hi: float
    px_lo: float
    px_hi: float
    log: bool = False

    def __call__(self, value: float) -> float:
        lo, hi, v = self.lo, self.hi, value
        if self.log:
            lo, hi, v = math.log10(lo), math.log10(hi), math.log10(v)
        return self.px_lo + (v - lo) / (hi - lo) * (self.px_hi - self.px_lo)


def _usable(value: float | None, log: bool) -> bool:
    return value is not None and (value > 0 or not log)


def _axis(values: Sequence[float], log: bool) -> tuple[float, float, list[float]]:
    return log_ticks(min(values), max(values)) if log else linear_ticks(min(values), max(values))


# --------------------------------------------------------------------------- SVG helpers


@dataclass(frozen=True)
class Series:
    """One curve or point set; None / NaN entries break the line instead of faking data."""

    x: Sequence[float | None]
    y: Sequence[float | None]
    label: str = ""
    color: str = BLUE
    line: bool = True
    points: bool = False
    dashed: bool = False
    hollow: bool = False
    tips: Sequence[str] = ()


@dataclass(frozen=True)
class Marker:
    """A highlighted single point with a text label (e.g. the chosen operating point)."""

    x: float
    y: float
    label: str
    color: str = ORANGE


def _pairs(series: Series) -> list[tuple[float | None, float | None]]:
    return [(_finite(x), _finite(y)) for x, y in zip(series.x, series.y, strict=False)]


def _svg_open(width: float, height: float, title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'width="{width:.0f}" height="{height:.0f}" role="img" aria-label="{_esc(title)}">'
        f"<title>{_esc(title)}</title>"
    )


def _text(x: float, y: float, text: str, anchor: str = "start", extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{extra}>{_esc(text)}</text>'


def _no_data_svg(title: str, width: int, height: int) -> str:
    return (
        _svg_open(width, height, title)
        + _text(width / 2, height / 2, "no finite data to plot", "middle")
        + "</svg>"
    )


def _legend(entries: Sequence[tuple[str, str, bool]], y: float) -> str:
    """Swatches in one row under the plot, where they can never hide data."""
    parts, x = [], float(_LEFT)
    for label, color, dashed in entries:
        dash = ' stroke-dasharray="5 3"' if dashed else ""
        parts.append(
            f'<line x1="{x:.1f}" y1="{y - 4:.1f}" x2="{x + 18:.1f}" y2="{y - 4:.1f}" '
            f'stroke="{color}" stroke-width="2"{dash}/>'
        )
        parts.append(_text(x + 22, y, label))
        x += 22 + _CHAR_PX * len(label) + 14
    return "".join(parts)


def svg_line_plot(
    series: Sequence[Series],
    *,
    title: str,
    x_label: str,
    y_label: str,
    x_log: bool = False,
    y_log: bool = False,
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    vlines: Sequence[tuple[float, str]] = (),
    markers: Sequence[Marker] = (),
    width: int = _WIDTH,
    height: int = _HEIGHT,
) -> str:
    """An inline SVG line / scatter plot with ticked, labelled axes.

    Parameters
    ----------
    series
        Curves to draw; points that are missing, non-finite or non-positive on a log axis
        are skipped and break the line.
    x_range, y_range
        Minimum extent of each axis (it still grows to fit the data, so nothing is clipped).
    vlines
        ``(x, label)`` vertical reference lines, e.g. the chosen threshold.
    markers
        Highlighted points drawn on top with their labels.
    """
    xs: list[float] = []
    ys: list[float] = []
    for s in series:
        for x, y in _pairs(s):
            if x is not None and y is not None and _usable(x, x_log) and _usable(y, y_log):
                xs.append(x)
                ys.append(y)
    xs += [v for v, _ in vlines if _usable(_finite(v), x_log)]
    xs += [m.x for m in markers if _usable(_finite(m.x), x_log)]
    ys += [m.y for m in markers if _usable(_finite(m.y), y_log)]
    if not xs or not ys:
        return _no_data_svg(title, width, height)
    xs += [v for v in x_range or () if _usable(v, x_log)]
    ys += [v for v in y_range or () if _usable(v, y_log)]

    legend = [(s.label, s.color, s.dashed) for s in series if s.label]
    left, right = float(_LEFT), float(width - _RIGHT)
    top, bottom = float(_TOP), float(height - _BOTTOM - (_LEGEND if legend else 0))
    x_lo, x_hi, x_ticks = _axis(xs, x_log)
    y_lo, y_hi, y_ticks = _axis(ys, y_log)
    sx = _Scale(x_lo, x_hi, left, right, x_log)
    sy = _Scale(y_lo, y_hi, bottom, top, y_log)

    out = [_svg_open(width, height, title)]
    for t in x_ticks:
        px = sx(t)
        out.append(
            f'<line x1="{px:.1f}" y1="{top:.1f}" x2="{px:.1f}" y2="{bottom + 4:.1f}" '
            f'stroke="{_GRID}"/>'
        )
        out.append(_text(px, bottom + 16, _tick_label(t, x_ticks, x_log), "middle"))
    for t in y_ticks:
        py = sy(t)
        out.append(
            f'<line x1="{left - 4:.1f}" y1="{py:.1f}" x2="{right:.1f}" y2="{py:.1f}" '
            f'stroke="{_GRID}"/>'
        )
        out.append(_text(left - 7, py + 4, _tick_label(t, y_ticks, y_log), "end"))
    out.append(
        f'<rect x="{left:.1f}" y="{top:.1f}" width="{right - left:.1f}" '
        f'height="{bottom - top:.1f}" fill="none" stroke="{_AXIS}"/>'
    )
    out.append(_text((left + right) / 2, bottom + 32, x_label, "middle"))
    out.append(
        _text(
            0,
            0,
            y_label,
            "middle",
            f' transform="translate(14 {(top + bottom) / 2:.1f}) rotate(-90)"',
        )
    )

    for s in series:
        pairs = _pairs(s)
        if s.line:
            path, pen_down = [], False
            for x, y in pairs:
                if x is None or y is None or not (_usable(x, x_log) and _usable(y, y_log)):
                    pen_down = False
                    continue
                path.append(f"{'L' if pen_down else 'M'}{sx(x):.1f} {sy(y):.1f}")
                pen_down = True
            if path:
                dash = ' stroke-dasharray="5 3"' if s.dashed else ""
                out.append(
                    f'<path d="{" ".join(path)}" fill="none" stroke="{s.color}" '
                    f'stroke-width="1.8" stroke-linejoin="round"{dash}/>'
                )
        if s.points:
            fill = "#fff" if s.hollow else s.color
            for i, (x, y) in enumerate(pairs):
                if x is None or y is None or not (_usable(x, x_log) and _usable(y, y_log)):
                    continue
                circle = (
                    f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3.2" fill="{fill}" '
                    f'stroke="{s.color}" stroke-width="1.4"'
                )
                tip = s.tips[i] if i < len(s.tips) else ""
                out.append(
                    f"{circle}><title>{_esc(tip)}</title></circle>" if tip else circle + "/>"
                )

    for v, label in vlines:
        if not _usable(_finite(v), x_log):
            continue
        px = sx(v)
        out.append(
            f'<line x1="{px:.1f}" y1="{top:.1f}" x2="{px:.1f}" y2="{bottom:.1f}" '
            f'stroke="{ORANGE}" stroke-width="1.5" stroke-dasharray="4 3"/>'
        )
        # Flip the label to the left of the line when it would run off the frame.
        flip = px + 8 + _CHAR_PX * len(label) > right
        out.append(_text(px - 4 if flip else px + 4, top + 12, label, "end" if flip else "start"))

    for m in markers:
        if not (_usable(_finite(m.x), x_log) and _usable(_finite(m.y), y_log)):
            continue
        px, py = sx(m.x), sy(m.y)
        out.append(
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="6" fill="none" stroke="{m.color}" '
            f'stroke-width="2.2"/>'
        )
        flip = px + 12 + _CHAR_PX * len(m.label) > right
        out.append(_text(px - 10 if flip else px + 10, py - 9, m.label, "end" if flip else "start"))

    if legend:
        out.append(_legend(legend, height - 8))
    out.append("</svg>")
    return "".join(out)


def svg_bar_chart(
    items: Sequence[tuple[str, float]],
    *,
    title: str,
    value_label: str = "",
    width: int = _WIDTH,
    bar_height: int = 16,
    gap: int = 6,
    positive_color: str = BLUE,
    negative_color: str = RED,
) -> str:
    """Horizontal bars diverging from zero, drawn in the given order.

    Negative values get ``negative_color``; non-finite values are drawn as empty bars with a
    dash so a broken weight is visible rather than silently dropped.
    """
    if not items:
        return _no_data_svg(title, width, _HEIGHT // 2)
    names = [n if len(n) <= 22 else n[:21] + "…" for n, _ in items]
    values = [_finite(v) for _, v in items]
    finite = [v for v in values if v is not None] or [0.0]
    label_px = max(40.0, 16 + _CHAR_PX * max(len(n) for n in names))
    top, row = 8.0, float(bar_height + gap)
    bottom = top + row * len(items)
    height = bottom + 40 + (0 if not value_label else 4)
    lo, hi, ticks = linear_ticks(min(0.0, *finite), max(0.0, *finite))
    sx = _Scale(lo, hi, label_px, width - 56.0)
    zero = sx(0.0)

    out = [_svg_open(width, height, title)]
    for t in ticks:
        px = sx(t)
        out.append(
            f'<line x1="{px:.1f}" y1="{top:.1f}" x2="{px:.1f}" y2="{bottom + 4:.1f}" '
            f'stroke="{_GRID}"/>'
        )
        out.append(_text(px, bottom + 16, _tick_label(t, ticks, False), "middle"))
    for i, ((full, _), name, v) in enumerate(zip(items, names, values, strict=True)):
        y = top + i * row
        mid = y + bar_height / 2 + 4
        out.append(_text(label_px - 6, mid, name, "end"))
        if v is None:
            out.append(_text(zero + 4, mid, _DASH))
            continue
        end = sx(v)
        color = negative_color if v < 0 else positive_color
        out.append(
            f'<rect x="{min(zero, end):.1f}" y="{y:.1f}" width="{abs(end - zero):.1f}" '
            f'height="{bar_height}" fill="{color}"><title>{_esc(full)}: {fmt_num(v)}</title>'
            "</rect>"
        )
        # Value text sits right of whichever is further right, bar end or zero, so it
        # never collides with the name column on the left.
        out.append(_text(max(zero, end) + 4, mid, f"{v:+.3f}"))
    out.append(
        f'<line x1="{zero:.1f}" y1="{top - 2:.1f}" x2="{zero:.1f}" y2="{bottom:.1f}" '
        f'stroke="{_AXIS}"/>'
    )
    if value_label:
        out.append(_text((label_px + width - 56) / 2, bottom + 32, value_label, "middle"))
    out.append("</svg>")
    return "".join(out)


# --------------------------------------------------------------------------- HTML pieces


def _kv_table(rows: Sequence[tuple[str, str]]) -> str:
    """Two-column table; values are pre-escaped HTML, keys are escaped here."""
    body = "".join(f"<tr><th>{_esc(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{caption}</figcaption></figure>"


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _floats(values: object) -> list[float | None]:
    return [_finite(v) for v in values] if isinstance(values, Sequence) else []


def _objective(report: Mapping[str, Any]) -> Mapping[str, Any]:
    """The threshold objective: ``report["objective"]`` (``metric`` is its name)."""
    return _mapping(report.get("objective")) or {"metric": report.get("metric", "?")}


def describe_objective(metric: Mapping[str, Any]) -> str:
    """Human-readable objective, showing only the options that metric actually uses."""
    name = str(metric.get("metric", "?"))
    if name == "fbeta":
        return f"F-beta (β = {fmt_num(metric.get('beta'))})"
    if name == "precision":
        return f"precision subject to recall ≥ {fmt_num(metric.get('min_recall'))}"
    if name == "recall":
        return f"recall subject to precision ≥ {fmt_num(metric.get('min_precision'))}"
    if name == "profit":
        gain, cost = fmt_num(metric.get("gain")), fmt_num(metric.get("cost"))
        return f"profit = {gain} × TP − {cost} × FP"
    if name == "pr_auc":
        return "PR-AUC (threshold at the F1 optimum)"
    return "F1" if name == "f1" else name


def _wide_range(values: Sequence[float | None]) -> bool:
    """True when positive values span two decades or more: then a log axis reads better."""
    usable = [v for v in values if v is not None and v > 0]
    return bool(usable) and max(usable) / min(usable) >= 100


def _header(report: Mapping[str, Any]) -> str:
    model = _mapping(report.get("model"))
    name, version = model.get("name", "model"), model.get("version", "?")
    rows = [
        ("Strategy", f"<strong>{_esc(report.get('strategy', _DASH))}</strong>"),
        ("Reason", _esc(report.get("strategy_reason") or _DASH)),
        (
            "Threshold",
            f"<strong>{fmt_num(report.get('threshold'))}</strong> "
            f"(objective: {_esc(describe_objective(_objective(report)))})",
        ),
        ("Fit time", f"{fmt_num(report.get('fit_seconds'), 3)} s"),
        ("Published", _esc(report.get("published") or _DASH)),
    ]
    out = [f"<h1>metasignal report: {_esc(name)} v{_esc(version)}</h1>"]
    skill = _mapping(report.get("skill"))
    if skill:
        # The verdict leads: without evidence of skill no model was published.
        style = "note" if skill.get("skilled") else "warn"
        verdict = f"{skill.get('verdict', _DASH)}: {skill.get('reason', '')}"
        out.append(f'<p class="{style}"><strong>Verdict</strong> {_esc(verdict)}</p>')
    out.append(_kv_table(rows))
    fallbacks = report.get("fallbacks") or []
    if fallbacks:
        items = "".join(f"<li>{_esc(f)}</li>" for f in fallbacks)
        out.append(f'<div class="warn"><strong>Fallbacks used</strong><ul>{items}</ul></div>')
    return "".join(out)


def _holdout_section(report: Mapping[str, Any]) -> str:
    head = "<h2>Holdout</h2>"
    holdout = report.get("holdout")
    if not isinstance(holdout, Mapping):
        return head + (
            '<p class="note">No holdout period: every row was used for tuning, so only the '
            "walk-forward figures below are available.</p>"
        )
    period = _mapping(report.get("holdout_period"))
    oof_brier = _mapping(report.get("validation")).get("oof_brier")
    rows = [
        ("Period", f"{_esc(period.get('start', _DASH))} → {_esc(period.get('end', _DASH))}"),
        ("Rows", fmt_num(holdout.get("n"))),
        ("Threshold", fmt_num(holdout.get("threshold", report.get("threshold")))),
        ("F1", fmt_num(holdout.get("f1"))),
        ("Precision", fmt_num(holdout.get("precision"))),
        ("Recall", fmt_num(holdout.get("recall"))),
        ("PR-AUC", fmt_num(holdout.get("pr_auc"))),
        (
            "Brier score",
            f"{fmt_num(holdout.get('brier'))} (walk-forward out-of-fold: {fmt_num(oof_brier)})",
        ),
        ("Positives", fmt_num(holdout.get("positives"))),
        ("Predicted positives", fmt_num(holdout.get("predicted_positives"))),
        (
            "Positive rate",
            f"observed {fmt_pct(holdout.get('observed_rate'))} vs expected "
            f"{fmt_pct(holdout.get('expected_rate'))} (mean predicted probability)",
        ),
    ]
    return head + _kv_table(rows)


def _threshold_figure(plot: Mapping[str, Any], report: Mapping[str, Any]) -> str:
    thresholds, values = _floats(plot.get("threshold")), _floats(plot.get("value"))
    metric = str(plot.get("metric") or _objective(report).get("metric", "metric"))
    chosen = _finite(plot.get("chosen", report.get("threshold")))
    # A linear axis shows the region around a chosen threshold well unless that threshold
    # sits in the first tenth of the range, as it does for very rare events; then a log axis
    # gives the interesting region room (rounded-to-zero thresholds drop out of it).
    top = max((t for t in thresholds if t is not None), default=0.0)
    x_log = chosen is not None and 0 < chosen < 0.1 * top and _wide_range(thresholds)
    vlines = [(chosen, f"chosen {fmt_num(chosen)}")] if chosen is not None else []
    svg = svg_line_plot(
        [Series(thresholds, values, color=BLUE)],
        title=f"{metric} vs threshold",
        x_label="threshold" + (" (log scale)" if x_log else ""),
        y_label=metric,
        x_log=x_log,
        vlines=vlines,
    )
    axis = (
        "log threshold axis, since the chosen threshold sits close to zero"
        if x_log
        else "linear threshold axis"
    )
    gaps = any(v is None for v in values)
    caption = (
        f"<strong>{_esc(metric)} vs threshold</strong>, {_esc(plot.get('source', ''))}; "
        f"{axis}. Dashed line: chosen threshold."
        + (" Gaps: thresholds that violate the objective's constraint." if gaps else "")
    )
    return _figure(svg, caption)


def _pr_figure(plot: Mapping[str, Any], report: Mapping[str, Any]) -> str:
    recall, precision = _floats(plot.get("recall")), _floats(plot.get("precision"))
    series = [Series(recall, precision, label="PR curve", color=BLUE)]
    rate = _finite(_mapping(report.get("holdout")).get("observed_rate"))
    if rate is not None:
        series.append(Series([0.0, 1.0], [rate, rate], "no skill", GREY, dashed=True))
    chosen = _mapping(plot.get("chosen"))
    r, p = _finite(chosen.get("recall")), _finite(chosen.get("precision"))
    threshold = fmt_num(report.get("threshold"))
    markers = [Marker(r, p, f"t = {threshold}")] if r is not None and p is not None else []
    svg = svg_line_plot(
        series,
        title="precision-recall curve",
        x_label="recall",
        y_label="precision",
        x_range=(0.0, 1.0),
        y_range=(0.0, 1.0),
        markers=markers,
    )
    caption = (
        f"<strong>Precision-recall</strong>, {_esc(plot.get('source', ''))}. Ring: chosen "
        f"operating point (threshold {threshold}"
        + (f", precision {fmt_num(p, 3)}, recall {fmt_num(r, 3)}" if markers else "")
        + ")."
        + (" Dashed: precision of random picking (the positive rate)." if rate is not None else "")
    )
    return _figure(svg, caption)


def _calibration_figure(plot: Mapping[str, Any], calibration: Mapping[str, Any]) -> str:
    predicted, observed = _floats(plot.get("predicted")), _floats(plot.get("observed"))
    raw_counts = plot.get("count")
    counts: Sequence[object] = raw_counts if isinstance(raw_counts, Sequence) else []
    bins = [
        (p, o, counts[i] if i < len(counts) else None)
        for i, (p, o) in enumerate(zip(predicted, observed, strict=False))
        if p is not None and o is not None
    ]
    log = _wide_range([p for p, _, _ in bins]) and all(p > 0 for p, _, _ in bins)
    positive = [v for p, o, _ in bins for v in (p, o) if v > 0]
    if log and positive:
        # Same decade range on both axes so the diagonal is the diagonal; bins with no
        # observed positive cannot sit on a log axis, so they rest on its floor, hollow.
        lo, hi, _ = log_ticks(min(positive), max(positive))
    else:
        log, lo, hi = False, 0.0, max([v for p, o, _ in bins for v in (p, o)] or [1.0])
    floor = lo

    def tip(p: float, o: float, c: object) -> str:
        return f"predicted {fmt_num(p, 3)}, observed {fmt_num(o, 3)}, n = {fmt_num(c)}"

    hit = [(p, o, c) for p, o, c in bins if o > 0 or not log]
    empty = [(p, o, c) for p, o, c in bins if o <= 0 and log]
    series = [
        Series([lo, hi], [lo, hi], "perfect calibration", GREY, dashed=True),
        Series(
            [p for p, _, _ in hit],
            [o for _, o, _ in hit],
            "observed rate per bin",
            BLUE,
            points=True,
            tips=[tip(*b) for b in hit],
        ),
    ]
    if empty:
        series.append(
            Series(
                [p for p, _, _ in empty],
                [floor] * len(empty),
                color=BLUE,
                line=False,
                points=True,
                hollow=True,
                tips=[tip(*b) for b in empty],
            )
        )
    scale = "log" if log else "linear"
    svg = svg_line_plot(
        series,
        title="reliability curve",
        x_label=f"mean predicted probability ({scale})",
        y_label=f"observed positive rate ({scale})",
        x_log=log,
        y_log=log,
        x_range=(lo, hi),
        y_range=(lo, hi),
    )
    method = _esc(calibration.get("method", "calibration"))
    caption = (
        f"<strong>Reliability</strong>, {_esc(plot.get('source', ''))}, {len(bins)} quantile "
        f"bins; calibration {method} (slope {fmt_num(calibration.get('slope'))}, intercept "
        f"{fmt_num(calibration.get('intercept'))}). "
        + (
            "Log–log axes: rare-event probabilities span several decades and a linear axis "
            "would crush all but the top bin into the corner."
            if log
            else "Linear axes: the predicted probabilities span less than two decades."
        )
        + (" Hollow markers on the floor: bins with no observed positive." if empty else "")
    )
    return _figure(svg, caption)


def _plots_section(report: Mapping[str, Any]) -> str:
    plots = _mapping(report.get("plots"))
    figures, missing = [], []
    if isinstance(plots.get("pr_curve"), Mapping):
        figures.append(_pr_figure(plots["pr_curve"], report))
    else:
        missing.append("precision-recall curve")
    if isinstance(plots.get("metric_vs_threshold"), Mapping):
        figures.append(_threshold_figure(plots["metric_vs_threshold"], report))
    else:
        missing.append("metric vs threshold")
    if isinstance(plots.get("calibration"), Mapping):
        figures.append(
            _calibration_figure(plots["calibration"], _mapping(report.get("calibration")))
        )
    else:
        missing.append("reliability curve")
    out = ["<h2>Curves</h2>"]
    if figures:
        out.append(f'<div class="grid">{"".join(figures)}</div>')
    if missing:
        out.append(
            f'<p class="note">Not available: {_esc(", ".join(missing))} '
            "(the holdout curves need a holdout with at least one positive).</p>"
        )
    return "".join(out)


def _weights_section(report: Mapping[str, Any]) -> str:
    weights = _mapping(report.get("member_weights"))
    head = "<h2>Member weights</h2>"
    if not weights:
        return head + '<p class="note">No member weights in this report.</p>'
    # Sorting by magnitude puts the members that move the decision most on top.
    items = sorted(
        ((str(k), v) for k, v in weights.items()),
        key=lambda kv: -abs(_finite(kv[1]) or 0.0),
    )
    svg = svg_bar_chart(items, title="member weights", value_label="weight (logit scale)")
    caption = (
        "Meta-model coefficients, sorted by magnitude; "
        f'<span style="color:{RED}">red</span> bars are negative. '
        f"Intercept {fmt_num(report.get('intercept'))}."
    )
    return head + _figure(svg, caption)


def _strategies_section(report: Mapping[str, Any]) -> str:
    validation = _mapping(report.get("validation"))
    strategies = _mapping(validation.get("strategies"))
    metric = validation.get("metric") or _objective(report).get("metric", "metric")
    head = "<h2>Strategy comparison (walk-forward)</h2>"
    if not strategies:
        return head + '<p class="note">No walk-forward results in this report.</p>'
    chosen = report.get("strategy")
    rows = []
    for name, raw in strategies.items():
        s = _mapping(raw)
        folds = " · ".join(fmt_metric(v, 3) for v in s.get("fold_values") or [])
        fold_thresholds = " · ".join(fmt_num(v, 3) for v in s.get("fold_thresholds") or [])
        notes = [_esc(f) for f in s.get("fallbacks") or []]
        skipped = s.get("skipped_folds") or []
        if skipped:
            notes.append("skipped folds " + _esc(", ".join(str(k) for k in skipped)))
        is_chosen = name == chosen
        label = _esc(name) + (" (chosen)" if is_chosen else "")
        row_class = ' class="chosen"' if is_chosen else ""
        if fold_thresholds:
            folds += f'<br><span class="note">t: {fold_thresholds}</span>'
        rows.append(
            f'<tr{row_class} data-strategy="{_esc(name)}">'
            f"<td>{label}</td>"
            f'<td class="num">{fmt_metric(s.get("mean"))} ± {fmt_metric(s.get("std"))}</td>'
            f"<td>{folds or _DASH}</td>"
            f'<td class="num">{fmt_num(s.get("threshold"))}</td>'
            f'<td class="num">{fmt_num(s.get("fit_seconds"), 3)}</td>'
            f"<td>{'<br>'.join(notes) or _DASH}</td></tr>"
        )
    header = (
        f"<tr><th>strategy</th><th>{_esc(metric)} mean ± std</th><th>per fold</th>"
        "<th>threshold</th><th>fit s</th><th>notes</th></tr>"
    )
    return (
        head
        + f"<table><thead>{header}</thead><tbody>{''.join(rows)}</tbody></table>"
        + '<p class="note">Per fold: the metric on each validation fold at the mean of the '
        "other folds' thresholds, so no fold grades itself; t: the threshold best on that "
        "fold. A strategy's threshold is the mean of its fold thresholds. Out-of-fold Brier "
        f"score of the chosen strategy: {fmt_num(validation.get('oof_brier'))}.</p>"
    )


def _training_section(report: Mapping[str, Any]) -> str:
    training = _mapping(report.get("training"))
    if not training:
        return ""
    rows = [
        ("Period", f"{_esc(training.get('start', _DASH))} → {_esc(training.get('end', _DASH))}"),
        ("Rows", fmt_num(training.get("rows"))),
        ("Positives", fmt_num(training.get("positives"))),
        ("Positive rate", fmt_pct(training.get("positive_rate"))),
    ]
    return "<h2>Training window</h2>" + _kv_table(rows)


def _libraries_section(report: Mapping[str, Any]) -> str:
    libraries = _mapping(report.get("libraries"))
    if not libraries:
        return ""
    rows = [(str(k), _esc(v)) for k, v in libraries.items()]
    return "<h2>Library versions</h2>" + _kv_table(rows)


def render_html(report: dict[str, Any]) -> str:
    """The report dict as one self-contained HTML page.

    Parameters
    ----------
    report
        The dict written next to the HTML as ``report.json``; missing or None pieces
        (no holdout, absent plots) are rendered as notes rather than failing.

    Returns
    -------
    A complete HTML document with inline CSS and SVG and no scripts.
    """
    model = _mapping(report.get("model"))
    title = f"metasignal report: {model.get('name', 'model')} v{model.get('version', '?')}"
    body = "".join(
        (
            _header(report),
            _holdout_section(report),
            _plots_section(report),
            _weights_section(report),
            _strategies_section(report),
            _training_section(report),
            _libraries_section(report),
        )
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head>"
        f"<body>{body}</body></html>\n"
    )
