"""The demo's ``timeline.html``: what the closed loop did over the live stream, drawn.

Three stacked panels share the live-event axis: realized vs signalled rate, rolling F1 with
the loop on against the first model alone, and the model version serving each event.
Events (injected changes, drift requests, models going live, candidates the gate refused)
are vertical marks styled by kind and named once in a legend, never as text on the plot,
so they cannot overlap; the table below the figure lists each with its details.

Examples
--------
>>> Mark(at=120, kind="refused", text="candidate refused").style
('#868e96', '-.')
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from metasignal.trainer.report import fmt_num, fmt_pct, page

# kind -> (legend label, colour, line style)
MARK_KINDS: Final[dict[str, tuple[str, str, str]]] = {
    "injected": ("injected change", "#212529", ":"),
    "retune": ("re-tune requested (drift)", "#e8590c", "--"),
    "retrain": ("retrain requested (drift)", "#c92a2a", "--"),
    "label_shift": ("label-shift re-tune requested (from the scores)", "#5f3dc4", "--"),
    "live": ("new model live", "#2b8a3e", "-"),
    "refused": ("candidate refused by the gate", "#868e96", "-."),
}

WINDOW: Final = 5000


@dataclass(frozen=True)
class Mark:
    """One event on the live stream: ``at`` is its live event index."""

    at: int
    kind: str
    text: str

    @property
    def style(self) -> tuple[str, str]:
        """``(colour, line style)`` of the kind (unknown kinds are grey dotted)."""
        _, color, style = MARK_KINDS.get(self.kind, (self.kind, "#adb5bd", ":"))
        return color, style


def rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` events; NaN until the window is full."""
    sums = np.cumsum(np.r_[0.0, values])
    out = np.full(len(values), np.nan)
    out[window - 1 :] = (sums[window:] - sums[:-window]) / window
    return out


def rolling_f1(labels: np.ndarray, decisions: np.ndarray, window: int) -> np.ndarray:
    """Trailing F1 over ``window`` events (NaN where the window holds no positive or signal)."""
    tp = rolling_mean(((labels == 1) & (decisions == 1)).astype(float), window)
    predicted = rolling_mean(decisions.astype(float), window)
    actual = rolling_mean(labels.astype(float), window)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(predicted + actual > 0, 2 * tp / (predicted + actual), np.nan)


def timeline_figure(
    labels: np.ndarray,
    decisions: np.ndarray,
    baseline: np.ndarray,
    versions: np.ndarray,
    marks: Sequence[Mark],
    *,
    window: int = WINDOW,
) -> Any:
    """The three panels with every mark on each and one legend for the marks."""
    from matplotlib.ticker import MaxNLocator

    from metasignal.trainer import plots

    window = max(1, min(window, len(labels)))
    step = max(len(labels) // 600, 1)
    x = np.arange(0, len(labels), step)
    fig = plots.new_figure(width=9.6, height=8.2, rows=3)
    rates, f1, model = fig.axes
    rates.sharex(model)
    f1.sharex(model)
    rates.plot(x, rolling_mean(labels.astype(float), window)[x], color=plots.BLUE,
               label="realized positive rate")  # fmt: skip
    rates.plot(x, rolling_mean(decisions.astype(float), window)[x], color=plots.ORANGE,
               label="signal rate (loop on)")  # fmt: skip
    rates.yaxis.set_major_formatter(lambda v, _: f"{100 * v:.3g}%")
    rates.set_title(f"Realized positive rate vs signal rate (rolling {window:,} events)")
    rates.set_ylabel("rate")
    f1.plot(x, rolling_f1(labels, decisions, window)[x], color=plots.BLUE, label="loop on")
    f1.plot(x, rolling_f1(labels, baseline, window)[x], color=plots.GREY,
            label="first model only")  # fmt: skip
    f1.set_title(f"Rolling F1 ({window:,} events)")
    f1.set_ylabel("F1")
    model.step(x, versions[x], where="post", color=plots.PURPLE, label="serving version")
    model.set_title("Model version serving each event")
    model.set_ylabel("version")
    model.yaxis.set_major_locator(MaxNLocator(integer=True))
    model.set_xlabel("live event")
    for ax in fig.axes:
        for mark in marks:
            color, style = mark.style
            ax.axvline(mark.at, color=color, ls=style, lw=1.2, alpha=0.9)
        ax.legend(loc="upper left", fontsize=8, frameon=False)
    kinds = [k for k in MARK_KINDS if any(m.kind == k for m in marks)]
    handles = plots.marks_legend({MARK_KINDS[k][0]: MARK_KINDS[k][1:] for k in kinds})
    if handles:
        fig.legend(
            handles=handles,
            loc="outside lower center",
            ncols=min(len(handles), 3),
            frameon=False,
            fontsize=8,
            title="marks",
            title_fontsize=8,
        )
    return fig


def _figures_table(summary: Mapping[str, Any]) -> str:
    live = summary.get("live") or {}

    def joined(block: Mapping[str, Any], keys: Sequence[str], digits: int = 4) -> str:
        return " / ".join(fmt_num(block.get(k), digits) for k in keys)

    rows = [
        ("F1 after the drift, loop on", fmt_num(summary.get("f1_after_drift"), 3)),
        (
            "F1 after the drift, first model only",
            joined(summary, ["f1_after_drift_without_loop"], 3),
        ),
        ("F1 before the drift", fmt_num(summary.get("f1_before_drift"), 3)),
        ("Live F1 / precision / recall", joined(live, ["f1", "precision", "recall"], 3)),
        ("Re-tunes / retrains published", joined(summary, ["retunes", "retrains"])),
        ("Candidates refused by the gate", fmt_num(summary.get("refused"))),
        ("Model versions served", ", ".join(f"v{v}" for v in summary.get("model_versions") or [])),
        ("Votes / signals / trades", joined(summary, ["votes", "signals", "trades"])),
        ("Dead letters", fmt_num(summary.get("dlq"))),
        ("Latency p99 (vote to signal)", f"{fmt_num(summary.get('latency_p99_ms'), 6)} ms"),
    ]
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def _marks_table(marks: Sequence[Mark]) -> str:
    rows = []
    for mark in sorted(marks, key=lambda m: m.at):
        label = MARK_KINDS.get(mark.kind, (mark.kind,))[0]
        color, _ = mark.style
        klass = ' class="refused"' if mark.kind == "refused" else ""
        rows.append(
            f'<tr{klass} data-kind="{html.escape(mark.kind)}"><td class="num">{mark.at:,}</td>'
            f'<td><span style="color:{color}">■</span> {html.escape(label)}</td>'
            f"<td>{html.escape(mark.text)}</td></tr>"
        )
    return (
        "<table><thead><tr><th>live event</th><th>kind</th><th>what happened</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def timeline_html(
    labels: np.ndarray,
    decisions: np.ndarray,
    baseline: np.ndarray,
    versions: np.ndarray,
    marks: Sequence[Mark],
    summary: Mapping[str, Any],
) -> str:
    """The self-contained timeline page (inline CSS, one PNG figure, no scripts)."""
    from metasignal.trainer import plots

    fig = timeline_figure(labels, decisions, baseline, versions, marks)
    width, height = (round(v * 100) for v in fig.get_size_inches())
    transport = html.escape(str(summary.get("transport", "?")))
    loop = "on" if summary.get("loop", True) else "off"
    image = (
        f'<figure data-plot="timeline"><img src="{plots.png_data_uri(fig)}" '
        f'alt="rates, rolling F1 and model versions over the live stream" width="{width}" '
        f'height="{height}"><figcaption>Rolling windows of {WINDOW:,} events; each vertical '
        "mark is an event of the table below, styled by kind (legend under the panels). "
        "Grey F1: the first model scored offline on the same events, the loop's baseline."
        "</figcaption></figure>"
    )
    intro = (
        f'<p class="note">Live stream of {fmt_num(len(labels))} events on the {transport} '
        f"transport, loop {loop}; realized positive rate {fmt_pct(float(np.mean(labels)))}."
        "</p>"
    )
    body = (
        "<h1>metasignal demo: the closed loop</h1>"
        + intro
        + _figures_table(summary)
        + "<h2>Over the live stream</h2>"
        + image
        + "<h2>Timeline</h2>"
        + _marks_table(marks)
    )
    return page("metasignal demo timeline", body)
