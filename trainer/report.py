"""The fit report as one self-contained HTML page; plots by matplotlib, embedded as PNG.

The page has to open anywhere (a CI artifact, an air-gapped desk, an e-mail attachment), so
nothing is fetched and nothing runs: figures are ``data:`` URIs drawn by
:mod:`metasignal.trainer.plots`, which is imported only here, when a page is drawn. Every
string from the report dict is escaped, because member names, strategy reasons and library
names are user- or environment-controlled.

The page leads with what a reader must know first: the skill verdict (when the fit made
one) and the warnings, then the holdout figures, the curves, and how the threshold and the
strategy were chosen. Blocks written by other parts of ``fit`` (``skill``; ``validation``'s
``pnl``, ``purge`` and ``threshold_uncertainty``; ``holdout``'s ``pnl`` and ``intervals``;
``input`` with its ``entities``) are read with ``.get`` and rendered when present, so the
page never fails on a report that lacks them.

Examples
--------
>>> holdout_warnings({"n": 500, "positives": 12, "predicted_positives": 0, "f1": 0.0,
...                   "precision": 0.0, "observed_rate": 0.024, "expected_rate": 0.02})
... # doctest: +NORMALIZE_WHITESPACE
['only 12 positives in the holdout (fewer than 30): its precision, recall and F1 rest on
  too few events to trust', 'holdout F1 is 0: the model never signalled on the holdout',
  'signals on 0% of holdout events against a realized positive rate of 2.4%']
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "MIN_HOLDOUT_POSITIVES",
    "RATE_FACTOR",
    "describe_objective",
    "fmt_metric",
    "fmt_num",
    "fmt_pct",
    "holdout_warnings",
    "page",
    "render_html",
]

# Below this many positives a holdout's precision and recall move by several points per event.
MIN_HOLDOUT_POSITIVES: Final = 30
# Signal rate or mean predicted probability this many times off the realized rate is "far".
RATE_FACTOR: Final = 3.0

_DASH = "—"

CSS: Final = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d2330;
max-width:1020px;margin:1.5rem auto;padding:0 1rem}
h1{font-size:1.4rem;margin:0 0 .5rem}
h2{font-size:1.1rem;margin:1.6rem 0 .5rem;border-bottom:1px solid #dde1e7;padding-bottom:.2rem}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;margin:.3rem 0}
th,td{padding:.25rem .6rem;border-bottom:1px solid #eceff3;text-align:left;vertical-align:top}
th{font-weight:600;color:#495057}
td.num{text-align:right}
tr.chosen{background:#fff4e0;font-weight:600}
tr.refused{color:#868e96}
table.kv th{width:13rem}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(470px,1fr));gap:1rem 1.5rem}
figure{margin:0}
figure img{max-width:100%;height:auto;display:block}
figcaption{font-size:12px;color:#5b6472;max-width:600px}
.note{color:#5b6472;font-size:13px}
.warn{background:#fff4e0;border-left:3px solid #e8590c;padding:.4rem .8rem;margin:.6rem 0}
.warn ul{margin:.2rem 0;padding-left:1.2rem}
.verdict{padding:.6rem .9rem;margin:.6rem 0;border-left:4px solid}
.verdict.pass{background:#ebfbee;border-color:#2b8a3e}
.verdict.fail{background:#fff5f5;border-color:#c92a2a}
.verdict .head{font-size:1.15rem;font-weight:700}
"""


# --------------------------------------------------------------------------- formatting


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _finite(value: object) -> float | None:
    """``value`` as a float, or None for None, NaN, infinities and non-numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def fmt_num(value: object, digits: int = 4) -> str:
    """Compact number: ints with separators, floats to ``digits`` significant digits.

    >>> fmt_num(12345), fmt_num(0.000123456), fmt_num(float("nan")), fmt_num(True)
    ('12,345', '0.0001235', '—', 'yes')
    """
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


def _interval(value: object) -> tuple[float, float] | None:
    """``[low, high]`` or ``{"low", "high"}`` (or ``interval``/``ci``) as a pair of floats."""
    if isinstance(value, Mapping):
        for key in ("interval", "ci"):
            if key in value:
                return _interval(value[key])
        value = [value.get("low", value.get("lo")), value.get("high", value.get("hi"))]
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        low, high = _finite(value[0]), _finite(value[1])
        if low is not None and high is not None:
            return low, high
    return None


def fmt_value(value: object) -> str:
    """Any report value as escaped HTML: numbers, intervals, estimates with intervals.

    >>> fmt_value({"value": 0.41, "interval": [0.3, 0.52]}), fmt_value([0.1, 0.2])
    ('0.41 [0.3, 0.52]', '[0.1, 0.2]')
    """
    pair = _interval(value)
    if isinstance(value, Mapping):
        estimate = next((value[k] for k in ("value", "estimate", "mean") if k in value), None)
        text = fmt_value(estimate) if estimate is not None else ""
        if pair is not None:
            text += f" [{fmt_num(pair[0])}, {fmt_num(pair[1])}]"
        return text.strip() or _DASH
    if pair is not None:
        return f"[{fmt_num(pair[0])}, {fmt_num(pair[1])}]"
    if value is None:
        return _DASH
    if isinstance(value, bool | int | float):
        return fmt_num(value)
    if isinstance(value, Sequence) and not isinstance(value, str):
        return " · ".join(fmt_value(v) for v in value) or _DASH
    return _esc(value)


_LABELS: Final = {"pr_auc": "PR-AUC", "null_pr_auc": "PR-AUC under the null", "p_value": "p-value"}


def _label(key: str) -> str:
    return _LABELS.get(key) or key.replace("_", " ").capitalize()


# --------------------------------------------------------------------------- warnings


def holdout_warnings(holdout: Mapping[str, Any] | None) -> list[str]:
    """What a reader must not miss about the holdout figures (empty when all is well)."""
    if not isinstance(holdout, Mapping):
        return []
    out = []
    n = _finite(holdout.get("n")) or 0
    positives = _finite(holdout.get("positives"))
    predicted = _finite(holdout.get("predicted_positives"))
    realized = _finite(holdout.get("observed_rate"))
    expected = _finite(holdout.get("expected_rate"))
    precision = _finite(holdout.get("precision"))
    if positives is not None and positives < MIN_HOLDOUT_POSITIVES:
        out.append(
            f"only {fmt_num(int(positives))} positives in the holdout (fewer than "
            f"{MIN_HOLDOUT_POSITIVES}): its precision, recall and F1 rest on too few events "
            "to trust"
        )
    if _finite(holdout.get("f1")) == 0 and positives:
        why = (
            "the model never signalled on the holdout"
            if not predicted
            else f"none of its {fmt_num(int(predicted))} signals was a positive"
        )
        out.append(f"holdout F1 is 0: {why}")
    if n and predicted is not None and realized:
        signal_rate = predicted / n
        if not 1 / RATE_FACTOR <= signal_rate / realized <= RATE_FACTOR:
            out.append(
                f"signals on {fmt_pct(signal_rate)} of holdout events against a realized "
                f"positive rate of {fmt_pct(realized)}"
            )
    if n and expected is not None and realized is not None:
        # Only a gap beyond sampling noise (3 standard errors) is worth a warning.
        noise = 3 * math.sqrt(max(expected * (1 - expected), 1e-12) / n)
        far = expected > RATE_FACTOR * realized or realized > RATE_FACTOR * expected
        if far and abs(expected - realized) > noise:
            out.append(
                f"mean predicted probability {fmt_pct(expected)} against a realized rate of "
                f"{fmt_pct(realized)}: the calibration does not carry over to the holdout"
            )
    if predicted and precision is not None and realized is not None and precision <= realized:
        out.append(
            f"holdout precision {fmt_pct(precision)} is no better than the base rate "
            f"{fmt_pct(realized)}: the signals do no better than picking events at random"
        )
    return out


# --------------------------------------------------------------------------- HTML pieces


def _kv_table(rows: Sequence[tuple[str, str]]) -> str:
    """Two-column table; values are pre-escaped HTML, keys are escaped here."""
    body = "".join(f"<tr><th>{_esc(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def _scalar_rows(block: Mapping[str, Any], skip: Sequence[str] = ()) -> list[tuple[str, str]]:
    """Every entry of a free-form block that reads as one value, in its own order."""
    return [
        (_label(str(k)), fmt_value(v))
        for k, v in block.items()
        if k not in skip and (not isinstance(v, Mapping) or _interval(v) or "value" in v)
    ]


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _objective(report: Mapping[str, Any]) -> Mapping[str, Any]:
    """The threshold objective: ``report["objective"]`` (``metric`` is its name)."""
    return _mapping(report.get("objective")) or {"metric": report.get("metric", "?")}


def describe_objective(metric: Mapping[str, Any]) -> str:
    """Human-readable objective, showing only the options that metric actually uses.

    >>> describe_objective({"metric": "profit", "gain": 3, "cost": 1})
    'profit = 3 × TP − 1 × FP'
    """
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


def _figure(fig: Figure, alt: str, caption: str, name: str) -> str:
    from metasignal.trainer.plots import png_data_uri

    width, height = (round(v * 100) for v in fig.get_size_inches())
    return (
        f'<figure data-plot="{_esc(name)}"><img src="{png_data_uri(fig)}" alt="{_esc(alt)}" '
        f'width="{width}" height="{height}"><figcaption>{caption}</figcaption></figure>'
    )


def _try_figure(draw: Callable[[], Figure], alt: str, caption: str, name: str) -> str:
    """A figure, or a one-line note if the data cannot be drawn (a report must render)."""
    try:
        fig = draw()
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        return f'<p class="note">{_esc(alt)}: cannot be drawn ({_esc(exc)}).</p>'
    return _figure(fig, alt, caption, name)


# --------------------------------------------------------------------------- sections


def _header(report: Mapping[str, Any]) -> str:
    sizing = _mapping(report.get("sizing"))
    spread = _threshold_uncertainty(report)
    band = _interval(spread.get("bootstrap_interval"))
    uncertainty = ""
    if _finite(spread.get("fold_min")) is not None:
        uncertainty = (
            f"; the folds' own optima span {fmt_num(spread.get('fold_min'))}–"
            f"{fmt_num(spread.get('fold_max'))}"
        )
    if band:
        uncertainty += f"; 95% block-bootstrap interval [{fmt_num(band[0])}, {fmt_num(band[1])}]"
    rows = [
        ("Strategy", f"<strong>{_esc(report.get('strategy', _DASH))}</strong>"),
        ("Reason", _esc(report.get("strategy_reason") or _DASH)),
        (
            "Threshold",
            f"<strong>{fmt_num(report.get('threshold'))}</strong> on the calibrated "
            f"probability (objective: {_esc(describe_objective(_objective(report)))})"
            f"{uncertainty}",
        ),
    ]
    if sizing.get("description"):
        rows.append(("Position size", _esc(sizing["description"])))
    rows += [
        ("Fit time", f"{fmt_num(report.get('fit_seconds'), 3)} s"),
        ("Published", _esc(report.get("published") or _DASH)),
    ]
    return "<h2>Model</h2>" + _kv_table(rows)


def _title(report: Mapping[str, Any]) -> str:
    model = _mapping(report.get("model"))
    return f"metasignal report: {model.get('name', 'model')} v{model.get('version', '?')}"


_VERDICT_KEYS = ("skilled", "passed", "has_skill", "significant")


def _verdict(skill: Mapping[str, Any]) -> bool | None:
    for key in _VERDICT_KEYS:
        if isinstance(skill.get(key), bool):
            return bool(skill[key])
    text = str(skill.get("verdict", "")).lower()
    if text:
        return not any(word in text for word in ("no ", "none", "fail", "refus", "without"))
    return None


def _verdict_section(report: Mapping[str, Any]) -> str:
    skill = report.get("skill")
    if not isinstance(skill, Mapping):
        return ""
    passed = _verdict(skill)
    if passed is None:
        head = str(skill.get("verdict") or "Skill test")
    else:
        head = "Evidence of skill" if passed else "No evidence of skill"
    klass = {True: "pass", False: "fail", None: ""}[passed]
    detail = next((skill[k] for k in ("reason", "detail", "message") if skill.get(k)), "")
    overridden = skill.get("overridden") or report.get("allow_no_skill")
    lines = [f'<div class="head">{_esc(head)}</div>']
    if detail:
        lines.append(f"<div>{_esc(detail)}</div>")
    if overridden and passed is False:
        lines.append("<div><strong>Published anyway: the gate was overridden.</strong></div>")
    skip = ("verdict", "reason", "detail", "message", "overridden", *_VERDICT_KEYS)
    table = _kv_table(_scalar_rows(skill, skip))
    return (
        "<h2>Verdict</h2>"
        f'<div class="verdict {klass}" data-verdict="{_esc(klass or "unknown")}">'
        f"{''.join(lines)}</div>{table}"
    )


def _warnings_section(report: Mapping[str, Any]) -> str:
    warnings = [*holdout_warnings(report.get("holdout"))]
    warnings += [str(w) for w in report.get("warnings") or [] if str(w) not in warnings]
    fallbacks = [str(f) for f in report.get("fallbacks") or []]
    out = []
    if warnings:
        items = "".join(f"<li>{_esc(w)}</li>" for w in warnings)
        out.append(
            f'<div class="warn" data-warnings><strong>Warnings</strong><ul>{items}</ul></div>'
        )
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
    held = _mapping(holdout.get("intervals"))

    def with_interval(key: str) -> str:
        pair = _interval(held.get(key)) or _interval(holdout.get(f"{key}_interval"))
        band = f" [{fmt_num(pair[0])}, {fmt_num(pair[1])}]" if pair else ""
        return fmt_num(holdout.get(key)) + band

    n, predicted = _finite(holdout.get("n")), _finite(holdout.get("predicted_positives"))
    signal_rate = predicted / n if n and predicted is not None else None
    rows = [
        ("Period", f"{_esc(period.get('start', _DASH))} → {_esc(period.get('end', _DASH))}"),
        ("Rows", fmt_num(holdout.get("n"))),
        ("Threshold", fmt_num(holdout.get("threshold", report.get("threshold")))),
        ("F1", with_interval("f1")),
        ("Precision", with_interval("precision")),
        ("Recall", with_interval("recall")),
        ("PR-AUC", fmt_num(holdout.get("pr_auc"))),
        (
            "Brier score",
            f"{fmt_num(holdout.get('brier'))} (walk-forward out-of-fold: {fmt_num(oof_brier)})",
        ),
        ("Positives", fmt_num(holdout.get("positives"))),
        ("Signals (predicted positives)", fmt_num(holdout.get("predicted_positives"))),
        (
            "Rates",
            f"realized {fmt_pct(holdout.get('observed_rate'))}, signalled "
            f"{fmt_pct(signal_rate)}, mean predicted probability "
            f"{fmt_pct(holdout.get('expected_rate'))}",
        ),
    ]
    note = ""
    if any(_interval(held.get(k)) for k in ("f1", "precision", "recall")):
        note = '<p class="note">[low, high]: 95% block-bootstrap interval.</p>'
    return head + _kv_table(rows) + note


def _pnl_section(report: Mapping[str, Any]) -> str:
    """PnL of the traded events (with a payoff column): out-of-fold and holdout, intervals."""
    blocks = {
        "out-of-fold (training period)": _mapping(_mapping(report.get("validation")).get("pnl")),
        "holdout": _mapping(_mapping(report.get("holdout")).get("pnl")),
    }
    blocks = {name: block for name, block in blocks.items() if block}
    if not blocks:
        return ""
    names: list[str] = []
    for block in blocks.values():
        names += [k for k in block if not k.endswith("_interval") and k not in names]
    header = "".join(f"<th>{_esc(name)}</th>" for name in blocks)
    rows = []
    for name in names:
        cells = []
        for block in blocks.values():
            band = _interval(block.get(f"{name}_interval"))
            text = fmt_value(block.get(name))
            if band:
                text += f" [{fmt_num(band[0])}, {fmt_num(band[1])}]"
            cells.append(f'<td class="num">{text}</td>')
        rows.append(f"<tr><th>{_esc(_label(name))}</th>{''.join(cells)}</tr>")
    return (
        "<h2>Money: PnL of the traded events</h2>"
        f"<table><thead><tr><th></th>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        '<p class="note">The payoff column summed over the events the model trades, beside '
        "F1. [low, high]: 95% block-bootstrap interval over time blocks.</p>" + _pnl_figure(report)
    )


def _pnl_figure(report: Mapping[str, Any]) -> str:
    from metasignal.trainer import plots

    data = _mapping(_mapping(report.get("plots")).get("pnl"))
    if not data:
        return ""
    caption = (
        "<strong>Cumulative PnL</strong>: the payoff column summed over the events traded at "
        f"the published threshold ({fmt_num(data.get('threshold'))}), in time order. Blue: "
        "the out-of-fold scores of the walk-forward folds (each fold scored by a model that "
        "never saw it); orange: the holdout, from zero at its start (dotted line)."
    )
    return _try_figure(
        lambda: plots.pnl_figure(
            _mapping(data.get("out_of_fold")), _mapping(data.get("holdout")) or None
        ),
        "cumulative PnL",
        caption,
        "pnl",
    )


def _plots_section(report: Mapping[str, Any]) -> str:
    from metasignal.trainer import plots

    figures, missing = [], []
    data = _mapping(report.get("plots"))
    curve = data.get("metric_vs_threshold")
    if isinstance(curve, Mapping):
        figures.append(_threshold_figure(plots, curve, report))
    else:
        missing.append("metric vs threshold")
    pr = data.get("pr_curve")
    if isinstance(pr, Mapping):
        figures.append(_pr_figure(plots, pr, report))
    else:
        missing.append("precision-recall curve")
    calibration = data.get("calibration")
    if isinstance(calibration, Mapping):
        figures.append(_calibration_figure(plots, calibration, report))
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


def _threshold_figure(plots: Any, curve: Mapping[str, Any], report: Mapping[str, Any]) -> str:
    metric = str(curve.get("metric") or _objective(report).get("metric", "metric"))
    chosen = _finite(curve.get("chosen", report.get("threshold")))
    band = _interval(_threshold_uncertainty(report).get("bootstrap_interval"))
    what = (
        "F1 (PR-AUC has no threshold of its own)"
        if _objective(report).get("metric") == "pr_auc"
        else _esc(plots.metric_label(metric))
    )
    caption = (
        f"<strong>How the threshold was chosen.</strong> Blue: {what} averaged over "
        f"{_esc(curve.get('source') or 'the walk-forward validation folds')}, at every "
        "candidate threshold (every distinct out-of-fold calibrated score). The threshold is the "
        "candidate where this mean peaks (ties go to the higher threshold, i.e. fewer "
        "trades); grey: each fold's own curve, whose spread is the threshold's uncertainty."
        + (" Shaded: the threshold's 95% block-bootstrap interval." if band else "")
    )
    return _try_figure(
        lambda: plots.threshold_figure(curve, chosen=chosen, metric=metric, interval=band),
        f"{plots.metric_label(metric)} vs threshold",
        caption,
        "threshold",
    )


def _pr_figure(plots: Any, pr: Mapping[str, Any], report: Mapping[str, Any]) -> str:
    holdout = _mapping(report.get("holdout"))
    chosen = _mapping(pr.get("chosen"))
    r, p = _finite(chosen.get("recall")), _finite(chosen.get("precision"))
    # The point is on the holdout's served scores: its threshold is the holdout's.
    threshold = _finite(holdout.get("threshold", report.get("threshold")))
    rate = _finite(holdout.get("observed_rate"))
    caption = (
        f"<strong>Precision-recall</strong> on the {_esc(pr.get('source') or 'holdout')}, "
        "scikit-learn's PrecisionRecallDisplay; AP is the holdout's average precision. Ring: "
        "the operating point at the published threshold."
        + (" Dashed: precision of random picking (the positive rate)." if rate else "")
    )
    return _try_figure(
        lambda: plots.pr_figure(
            pr.get("recall") or [],
            pr.get("precision") or [],
            base_rate=rate,
            average_precision=_finite(holdout.get("pr_auc")),
            chosen=(r, p) if r is not None and p is not None else None,
            threshold=threshold,
        ),
        "precision-recall curve",
        caption,
        "pr",
    )


def _calibration_figure(plots: Any, data: Mapping[str, Any], report: Mapping[str, Any]) -> str:
    calibration = _mapping(report.get("calibration"))
    predicted = data.get("predicted") or []
    method = _esc(calibration.get("method", "calibration"))
    caption = (
        f"<strong>Reliability</strong> on the {_esc(data.get('source') or 'holdout')}, "
        f"scikit-learn's CalibrationDisplay over {len(predicted)} quantile bins; calibration "
        f"map: {method} (slope {fmt_num(calibration.get('slope'))}, intercept "
        f"{fmt_num(calibration.get('intercept'))}), fitted on the out-of-fold scores. "
        "Points on the dashed diagonal are calibrated; rare-event probabilities that span "
        "decades are drawn on log–log axes."
    )
    return _try_figure(
        lambda: plots.calibration_figure(
            predicted, data.get("observed") or [], bins=len(predicted)
        ),
        "reliability curve",
        caption,
        "calibration",
    )


def _sizing_section(report: Mapping[str, Any]) -> str:
    from metasignal.stream.sizing import SizingRule
    from metasignal.trainer import plots

    sizing = _mapping(report.get("sizing"))
    # The rule applies to the served probability at the threshold the histogram's sizes were
    # taken at (the tuned threshold is on the scale before the served calibration); older
    # reports do not record it.
    served = _mapping(report.get("served"))
    threshold = _finite(sizing.get("threshold", served.get("threshold", report.get("threshold"))))
    if not sizing or threshold is None:
        return ""
    try:
        rule = SizingRule.from_dict(sizing.get("rule"))
    except ValueError as exc:
        return f'<h2>Position size</h2><p class="note">Unreadable sizing rule: {_esc(exc)}</p>'
    rows = [
        ("Rule", _esc(rule.describe())),
        ("Holdout trades", fmt_num(sizing.get("holdout_trades"))),
        ("Mean size of a trade", fmt_num(sizing.get("holdout_mean_size"), 3)),
        ("Trades of size 0", fmt_num(sizing.get("holdout_zero_size_trades"))),
    ]
    caption = (
        "Every signal carries a size in [0, 1]: 0 below the threshold, otherwise the rule "
        "above applied to the calibrated probability (the scorer computes the same function "
        "from the artifact)."
    )
    figure = _try_figure(
        lambda: plots.sizing_figure(
            rule, threshold=threshold, histogram=_mapping(sizing.get("holdout_histogram"))
        ),
        "position size",
        caption,
        "sizing",
    )
    return "<h2>Position size</h2>" + _kv_table(rows) + figure


def _weights_section(report: Mapping[str, Any]) -> str:
    from metasignal.trainer import plots

    weights = _mapping(report.get("member_weights"))
    head = "<h2>Member weights</h2>"
    if not weights:
        return head + '<p class="note">No member weights in this report.</p>'
    # Sorting by magnitude puts the members that move the decision most on top.
    items: list[tuple[str, float]] = []
    for key, value in weights.items():
        number = _finite(value)
        items.append((str(key), math.nan if number is None else number))
    items.sort(key=lambda kv: -abs(kv[1]) if math.isfinite(kv[1]) else 0.0)
    caption = (
        "Meta-model coefficients on the standardised member logits, sorted by magnitude; red "
        "bars are negative (a member the meta-model leans against)."
    )
    figure = _try_figure(
        lambda: plots.weights_figure(items, intercept=_finite(report.get("intercept"))),
        "member weights",
        caption,
        "weights",
    )
    rows = [(name, fmt_num(weight)) for name, weight in items]
    rows.append(("(intercept)", fmt_num(report.get("intercept"))))
    return head + f'<div class="grid">{figure}<div>{_kv_table(rows)}</div></div>'


def _strategy_row(name: str, s: Mapping[str, Any], chosen: bool) -> str:
    folds = " · ".join(fmt_metric(v, 3) for v in s.get("fold_values") or [])
    fold_thresholds = " · ".join(fmt_num(v, 3) for v in s.get("fold_thresholds") or [])
    notes = [_esc(f) for f in s.get("fallbacks") or []]
    skipped = s.get("skipped_folds") or []
    if skipped:
        notes.append("skipped folds " + _esc(", ".join(str(k) for k in skipped)))
    purged, embargoed = s.get("purged_rows"), s.get("embargoed_rows")
    if purged or embargoed:
        notes.append(f"{fmt_num(purged)} purged, {fmt_num(embargoed)} embargoed training rows")
    label = _esc(name) + (" (chosen)" if chosen else "")
    row_class = ' class="chosen"' if chosen else ""
    if fold_thresholds:
        folds += f'<br><span class="note">t: {fold_thresholds}</span>'
    return (
        f'<tr{row_class} data-strategy="{_esc(name)}">'
        f"<td>{label}</td>"
        f'<td class="num">{fmt_metric(s.get("mean"))} ± {fmt_metric(s.get("std"))}</td>'
        f"<td>{folds or _DASH}</td>"
        f'<td class="num">{fmt_num(s.get("threshold"))}</td>'
        f'<td class="num">{fmt_num(s.get("fit_seconds"), 3)}</td>'
        f"<td>{'<br>'.join(notes) or _DASH}</td></tr>"
    )


def _strategies_section(report: Mapping[str, Any]) -> str:
    validation = _mapping(report.get("validation"))
    strategies = _mapping(validation.get("strategies"))
    metric = validation.get("metric") or _objective(report).get("metric", "metric")
    head = "<h2>Strategy comparison (walk-forward)</h2>"
    if not strategies:
        return head + '<p class="note">No walk-forward results in this report.</p>'
    chosen = report.get("strategy")
    rows = [_strategy_row(str(n), _mapping(s), n == chosen) for n, s in strategies.items()]
    mine = _mapping(strategies.get(chosen)) if isinstance(chosen, str) else {}
    abstain = [_finite(v) for v in mine.get("abstain_values") or []]
    if abstain and all(v is not None for v in abstain):
        values = [v for v in abstain if v is not None]
        mean = sum(values) / len(values)
        spread = (sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1)) ** 0.5
        rows.append(
            '<tr data-strategy="abstain"><td>abstain (never trade)</td>'
            f'<td class="num">{fmt_metric(mean)} ± {fmt_metric(spread)}</td>'
            f"<td>{' · '.join(fmt_metric(v, 3) for v in values)}</td>"
            "<td></td><td></td><td>the candidate every strategy must beat</td></tr>"
        )
    header = (
        f"<tr><th>strategy</th><th>{_esc(metric)} mean ± std</th><th>per fold</th>"
        "<th>threshold</th><th>fit s</th><th>notes</th></tr>"
    )
    fold_mean = [v for v in map(_finite, mine.get("fold_thresholds") or []) if v is not None]
    contrast = ""
    if fold_mean:
        average = fmt_num(sum(fold_mean) / len(fold_mean))
        contrast = f" (not the mean of the fold thresholds, which is {average} for the chosen one)"
    return (
        head
        + f"<table><thead>{header}</thead><tbody>{''.join(rows)}</tbody></table>"
        + '<p class="note">Per fold: the metric on each validation fold at the threshold that '
        "maximises the metric averaged over the <em>other</em> folds, so no fold grades "
        "itself; mean ± std over those values. t: the threshold that is best on that fold "
        "alone, shown for its spread. A strategy's threshold maximises the metric averaged "
        f"over all its folds (the curve of the threshold chart){contrast}. Out-of-fold Brier "
        f"score of the chosen strategy: {fmt_num(validation.get('oof_brier'))}.</p>"
    )


def _threshold_uncertainty(report: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(_mapping(report.get("validation")).get("threshold_uncertainty"))


def _table_of_dicts(rows: Sequence[Mapping[str, Any]], index: str | None = None) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [str(k) for k in row if str(k) not in columns]
    header = (f"<th>{_esc(index)}</th>" if index else "") + "".join(
        f"<th>{_esc(_label(c))}</th>" for c in columns
    )
    body = "".join(
        "<tr>"
        + (f"<td>{k + 1}</td>" if index else "")
        + "".join(f'<td class="num">{fmt_value(row.get(c))}</td>' for c in columns)
        + "</tr>"
        for k, row in enumerate(rows)
    )
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def _duration(ms: object) -> str:
    """Milliseconds as the largest whole unit (``5d``, ``30min``); 0 or missing is none.

    >>> _duration(5 * 86_400_000), _duration(1_800_000), _duration(0)
    ('5d', '30min', 'none')
    """
    value = _finite(ms)
    if not value:
        return "none"
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000)):
        if value >= size and value % size == 0:
            return f"{value / size:g}{unit}"
    return f"{value:g} ms"


def _purge_section(report: Mapping[str, Any]) -> str:
    purge = _mapping(_mapping(report.get("validation")).get("purge"))
    if not purge:
        return ""
    horizon = _duration(purge.get("label_horizon_ms"))
    if purge.get("label_end_column"):
        horizon = "per row, from the label-end column"
    rows = [
        ("Label horizon", _esc(horizon)),
        ("Embargo", _esc(_duration(purge.get("embargo_ms")))),
    ]
    for key in ("holdout_purged", "holdout_embargoed"):
        if key in purge:
            rows.append((_label(key) + " rows", fmt_num(purge.get(key))))
    folds = [f for f in purge.get("folds") or [] if isinstance(f, Mapping)]
    table = _table_of_dicts(folds, index="fold") if folds else ""
    return (
        "<h2>Purge and embargo</h2>"
        + _kv_table(rows)
        + table
        + '<p class="note">Training rows whose label window reaches the next validation block '
        "are purged, and rows right after it embargoed (López de Prado, ch. 7); cuts never "
        "split rows that share a timestamp.</p>"
    )


def _input_section(report: Mapping[str, Any]) -> str:
    """How the table was read (time zone, unit, columns) and rows per entity."""
    data = _mapping(report.get("input"))
    if not data:
        return ""
    rows = _scalar_rows(data, skip=("entities", "members"))
    members = data.get("members")
    if isinstance(members, Sequence) and not isinstance(members, str):
        rows.append(("Members", _esc(", ".join(str(m) for m in members))))
    out = ["<h2>Input</h2>", _kv_table(rows)]
    entities = _mapping(data.get("entities"))
    if entities:
        spread = _mapping(entities.get("rows_per_entity"))
        facts = [
            ("Entity column", _esc(entities.get("column") or _DASH)),
            ("Entities", fmt_num(entities.get("count"))),
            ("With a positive", fmt_num(entities.get("with_positives"))),
            (
                "Rows per entity",
                f"min {fmt_num(spread.get('min'))}, median {fmt_num(spread.get('median'))}, "
                f"max {fmt_num(spread.get('max'))}",
            ),
        ]
        out.append("<h3>Entities</h3>" + _kv_table(facts))
        top = [t for t in entities.get("top") or [] if isinstance(t, Mapping)]
        if top:
            out.append(
                '<p class="note">Top entities by positives (every entity\'s counts are in '
                "report.json).</p>" + _table_of_dicts(top)
            )
    return "".join(out)


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


def page(title: str, body: str) -> str:
    """A complete HTML document with the report's inline CSS and no scripts."""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{CSS}</style></head>"
        f"<body>{body}</body></html>\n"
    )


def render_html(report: Mapping[str, Any]) -> str:
    """The report dict as one self-contained HTML page.

    Parameters
    ----------
    report
        The dict written next to the HTML as ``report.json``; missing or None pieces
        (no holdout, absent plots, blocks another fit step did not write) are rendered as
        notes or left out rather than failing.

    Returns
    -------
    A complete HTML document: inline CSS, PNG figures as ``data:`` URIs, no scripts.
    """
    body = "".join(
        (
            f"<h1>{_esc(_title(report))}</h1>",
            # What a reader must know first: the verdict and the warnings, then the facts.
            _verdict_section(report),
            _warnings_section(report),
            _header(report),
            _holdout_section(report),
            _pnl_section(report),
            _plots_section(report),
            _sizing_section(report),
            _weights_section(report),
            _strategies_section(report),
            _purge_section(report),
            _input_section(report),
            _training_section(report),
            _libraries_section(report),
        )
    )
    return page(_title(report), body)
