"""Figures for the fit report and the demo timeline, drawn by matplotlib (Agg backend).

Every figure is a plain :class:`matplotlib.figure.Figure` rendered by the Agg canvas: no
pyplot state, no GUI backend, safe in threads and on servers without a display. Pages embed
the PNG as a ``data:`` URI (:func:`png_data_uri`), so a report stays one file that opens
anywhere and fetches nothing. This module is imported only when a page is drawn, which
keeps matplotlib off the scorer's import path.

Examples
--------
>>> fig = threshold_figure(
...     {"threshold": [0.9, 0.5, 0.1], "value": [0.1, 0.4, 0.2], "folds": [[0.1, 0.5, 0.2]]},
...     chosen=0.5, metric="f1")
>>> png_data_uri(fig).startswith("data:image/png;base64,iVBOR")
True
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import date2num
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from metasignal.stream.sizing import SizingRule

__all__ = [
    "BLUE",
    "GREY",
    "ORANGE",
    "RED",
    "calibration_figure",
    "new_figure",
    "png_data_uri",
    "pnl_figure",
    "pr_figure",
    "sizing_figure",
    "threshold_figure",
    "weights_figure",
]

BLUE = "#1f6feb"
ORANGE = "#e8590c"
RED = "#c92a2a"
GREY = "#868e96"
GREEN = "#2b8a3e"
PURPLE = "#7048e8"

_DPI = 150  # twice the page's CSS size, so the PNGs stay sharp on high-density screens
_GRID = "#e9ecef"


def new_figure(width: float = 6.0, height: float = 3.8, rows: int = 1, cols: int = 1) -> Figure:
    """A figure on the Agg canvas with the report's style (grid, no top/right spines)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    fig.subplots(rows, cols, squeeze=False)
    for ax in fig.axes:
        _style(ax)
    return fig


def _style(ax: Axes) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(True, color=_GRID, linewidth=0.8)
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=9)
    ax.title.set_fontsize(10)
    ax.title.set_fontweight("bold")


def _legend(ax: Axes, **kwargs: Any) -> None:
    ax.legend(fontsize=8, frameon=False, **kwargs)


def png_data_uri(fig: Figure) -> str:
    """The figure as a ``data:image/png;base64,...`` URI (the figure is closed after)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
    fig.clear()
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _floats(values: object) -> np.ndarray:
    """A float array with NaN for anything missing or non-numeric (JSON gives both)."""
    if not isinstance(values, Sequence) or isinstance(values, str):
        return np.array([], dtype=np.float64)
    return np.array(
        [
            float(v) if isinstance(v, int | float) and not isinstance(v, bool) else math.nan
            for v in values
        ],
        dtype=np.float64,
    )


def _require_points(x: np.ndarray, y: np.ndarray) -> None:
    """Refuse a curve with nothing to draw, so the page says so instead of an empty frame."""
    if len(x) != len(y) or not (np.isfinite(x) & np.isfinite(y)).any():
        raise ValueError("no finite points to draw")


def wide_range(values: np.ndarray) -> bool:
    """True when positive values span two decades or more: a log axis then reads better."""
    positive = values[np.isfinite(values) & (values > 0)]
    return bool(positive.size) and positive.max() / positive.min() >= 100


def metric_label(metric: str) -> str:
    """Axis label of an objective; profit is averaged per event so folds compare."""
    return {
        "f1": "F1",
        "fbeta": "F-beta",
        "precision": "precision",
        "recall": "recall",
        "profit": "profit per event",
    }.get(metric, metric)


def threshold_figure(
    curve: Mapping[str, Any],
    *,
    chosen: float | None,
    metric: str,
    interval: Sequence[float] | None = None,
) -> Figure:
    """The fold-averaged objective against the threshold, each fold faint behind it.

    ``curve`` holds ``threshold``, ``value`` (the mean over folds) and ``folds`` (one list
    per fold). ``interval`` (low, high) shades an uncertainty band for the threshold.
    """
    thresholds, mean = _floats(curve.get("threshold")), _floats(curve.get("value"))
    folds = [_floats(f) for f in curve.get("folds") or []]
    _require_points(thresholds, mean)
    fig = new_figure()
    ax = fig.axes[0]
    order = np.argsort(thresholds)
    for k, fold in enumerate(folds):
        if len(fold) == len(thresholds):
            label = f"each of the {len(folds)} folds" if k == 0 else None
            ax.plot(thresholds[order], fold[order], color=GREY, alpha=0.45, lw=0.9, label=label)
    label = f"mean over {len(folds)} folds (maximised)" if folds else "objective"
    ax.plot(thresholds[order], mean[order], color=BLUE, lw=2.0, label=label)
    if interval is not None and len(interval) == 2 and all(map(math.isfinite, interval)):
        ax.axvspan(
            *interval, color=ORANGE, alpha=0.12, lw=0, label="threshold, 95% bootstrap interval"
        )
    if chosen is not None and math.isfinite(chosen):
        ax.axvline(chosen, color=ORANGE, ls="--", lw=1.5, label=f"chosen threshold {chosen:.4g}")
    top = np.nanmax(thresholds) if thresholds.size else 0.0
    if chosen and 0 < chosen < 0.1 * top and wide_range(thresholds):
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xlabel("threshold on the calibrated probability (log scale)")
    else:
        ax.set_xlabel("threshold on the calibrated probability")
    ax.set_ylabel(metric_label(metric))
    ax.set_title(f"{metric_label(metric)} vs threshold, walk-forward folds")
    _legend(ax, loc="best")
    return fig


def pr_figure(
    recall: Sequence[float],
    precision: Sequence[float],
    *,
    base_rate: float | None,
    average_precision: float | None,
    chosen: tuple[float, float] | None,
    threshold: float | None,
) -> Figure:
    """Holdout precision-recall curve (scikit-learn's display), the operating point ringed."""
    from sklearn.metrics import PrecisionRecallDisplay

    recall_values, precision_values = _floats(recall), _floats(precision)
    _require_points(recall_values, precision_values)
    fig = new_figure()
    ax = fig.axes[0]
    display = PrecisionRecallDisplay(
        precision=precision_values,
        recall=recall_values,
        average_precision=average_precision,
        prevalence_pos_label=base_rate,
    )
    display.plot(
        ax=ax,
        name="holdout",
        plot_chance_level=base_rate is not None,
        chance_level_kw={"color": GREY, "linestyle": "--"},
    )
    display.line_.set_color(BLUE)
    if chosen is not None:
        r, p = chosen
        where = f"threshold {threshold:.4g}: " if threshold is not None else ""
        ax.plot(
            [r],
            [p],
            "o",
            ms=9,
            mfc="none",
            mec=ORANGE,
            mew=2,
            label=f"{where}precision {p:.3f}, recall {r:.3f}",
        )
    ax.set_aspect("auto")  # the display squares the axes; the report's grid has the room
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.02)
    ax.set_title("Precision–recall on the holdout")
    _legend(ax, loc="lower left")
    return fig


def calibration_figure(
    predicted: Sequence[float], observed: Sequence[float], *, bins: int
) -> Figure:
    """Reliability curve (scikit-learn's display); log–log axes for rare-event probabilities.

    On log axes a bin with no observed positive has no place, so it is drawn hollow on the
    floor of the axis and named in the legend.
    """
    from sklearn.calibration import CalibrationDisplay

    pred, obs = _floats(predicted), _floats(observed)
    _require_points(pred, obs)
    ok = np.isfinite(pred) & np.isfinite(obs)
    pred, obs = pred[ok], obs[ok]
    fig = new_figure()
    ax = fig.axes[0]
    log = wide_range(pred) and bool((pred > 0).all())
    hit = obs > 0 if log else np.ones_like(obs, dtype=bool)
    display = CalibrationDisplay(prob_true=obs[hit], prob_pred=pred[hit], y_prob=pred)
    display.plot(ax=ax, name="observed rate per bin", ref_line=not log)
    display.line_.set_color(BLUE)
    if log:
        positive = np.concatenate([pred, obs[hit]])
        lo = 10.0 ** math.floor(math.log10(positive.min()))
        hi = 10.0 ** math.ceil(math.log10(positive.max()))
        ax.plot([lo, hi], [lo, hi], ls="--", color=GREY, label="perfectly calibrated")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.minorticks_off()  # decades of minor ticks cost a second of layout and say little
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        if (~hit).any():
            ax.plot(
                pred[~hit],
                np.full((~hit).sum(), lo),
                "s",
                mfc="white",
                mec=BLUE,
                clip_on=False,
                label="bin with no positive (on the floor)",
            )
        ax.set_xlabel("mean predicted probability (log)")
        ax.set_ylabel("observed positive rate (log)")
    else:
        ax.set_xlabel("mean predicted probability")
        ax.set_ylabel("observed positive rate")
    ax.set_aspect("auto")
    ax.set_title(f"Reliability on the holdout, {bins} quantile bins")
    _legend(ax, loc="upper left")
    return fig


def weights_figure(weights: Sequence[tuple[str, float]], *, intercept: float | None) -> Figure:
    """Horizontal bars in the given order (largest magnitude on top); negatives red."""
    names = [n if len(n) <= 24 else n[:23] + "…" for n, _ in weights]
    values = _floats([v for _, v in weights])
    fig = new_figure(height=max(1.6, 0.32 * len(names) + 1.0))
    ax = fig.axes[0]
    shown = np.nan_to_num(values)
    colors = [RED if v < 0 else BLUE for v in shown]
    rows = np.arange(len(names))
    ax.barh(rows, shown, color=colors)
    ax.set_yticks(rows, names)
    ax.invert_yaxis()
    ax.axvline(0, color="#495057", lw=0.8)
    for y, v in zip(rows, values, strict=True):
        text = "—" if not math.isfinite(v) else f"{v:+.3f}"
        ax.annotate(
            text,
            (0 if not math.isfinite(v) else v, y),
            xytext=(4 if not v < 0 else -4, 0),
            textcoords="offset points",
            ha="left" if not v < 0 else "right",
            va="center",
            fontsize=8,
        )
    ax.margins(x=0.18)
    ax.grid(axis="y", visible=False)
    ax.set_xlabel("weight on the standardised member logit")
    suffix = f" (intercept {intercept:+.3f})" if intercept is not None else ""
    ax.set_title("Member weights of the meta-model" + suffix)
    return fig


def sizing_figure(
    rule: SizingRule, *, threshold: float, histogram: Mapping[str, Any] | None
) -> Figure:
    """Left: the size the rule gives each probability; right: sizes of the holdout's trades."""
    fig = new_figure(width=7.6, height=3.2, cols=2)
    left, right = fig.axes
    p = np.linspace(0.0, 1.0, 2001)
    if 0.0 < threshold < 0.05:
        p = np.concatenate([np.geomspace(threshold / 4, 0.05, 800), p[p > 0.05]])
        left.set_xscale("log")
        left.minorticks_off()
    left.plot(p, rule.size(p, threshold), color=BLUE, lw=2, label="size")
    left.axvline(threshold, color=ORANGE, ls="--", lw=1.3, label=f"threshold {threshold:.4g}")
    left.set_ylim(-0.02, 1.02)
    left.set_xlabel("calibrated probability p")
    left.set_ylabel("position size")
    left.set_title(f"Sizing rule: {rule.method}")
    _legend(left, loc="upper left")
    counts = _floats((histogram or {}).get("counts"))
    edges = _floats((histogram or {}).get("edges"))
    if counts.size and edges.size == counts.size + 1 and counts.sum() > 0:
        right.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color=BLUE, ec="white")
        right.set_xlim(0, 1)
        right.set_title(f"Sizes of the {int(counts.sum()):,} holdout trades")
    else:
        right.text(0.5, 0.5, "no trade on the holdout", ha="center", va="center")
        right.set_title("Sizes of the holdout trades")
    right.set_xlabel("position size")
    right.set_ylabel("trades")
    return fig


def pnl_figure(out_of_fold: Mapping[str, Any], holdout: Mapping[str, Any] | None) -> Figure:
    """Cumulative payoff of the traded events over time: out-of-fold, then the holdout.

    Each period starts at zero, so the holdout line reads as "what the published rule made
    on data it never saw", beside what its walk-forward evidence made.
    """
    fig = new_figure(width=7.6, height=3.4)
    ax = fig.axes[0]
    drawn = 0
    for name, block, color in (
        ("out-of-fold (training period)", out_of_fold, BLUE),
        ("holdout", holdout, ORANGE),
    ):
        if not block:
            continue
        times = _floats(block.get("time_ms"))
        cumulative = _floats(block.get("cumulative"))
        if times.size == 0 or times.size != cumulative.size:
            continue
        finite = np.isfinite(times) & np.isfinite(cumulative)
        when = times[finite].astype(np.int64).astype("datetime64[ms]")
        trades = block.get("trades", finite.sum())
        ax.step(when, cumulative[finite], where="post", color=color, lw=1.6,
                label=f"{name}: {trades:,} trades")  # fmt: skip
        drawn += 1
    if not drawn:
        raise ValueError("no trades to draw")
    if holdout and holdout.get("time_ms"):
        start = np.datetime64(int(holdout["time_ms"][0]), "ms")
        ax.axvline(float(date2num(start)), color=GREY, ls=":", lw=1.2)
    ax.axhline(0.0, color=GREY, lw=0.8)
    ax.set_ylabel("cumulative payoff")
    ax.set_title("Cumulative PnL of the traded events")
    fig.autofmt_xdate()
    _legend(ax, loc="upper left")
    return fig


def marks_legend(styles: Mapping[str, tuple[str, str]]) -> list[Line2D]:
    """Legend handles for vertical marks: ``{label: (color, linestyle)}``."""
    return [
        Line2D([], [], color=c, ls=ls, lw=1.4, label=label) for label, (c, ls) in styles.items()
    ]
