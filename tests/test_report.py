"""Tests for trainer.report: well-formed, self-contained, escaped, and robust to gaps."""

from __future__ import annotations

import copy
import math
import re
from html.parser import HTMLParser
from typing import Any

import pytest

from metasignal.trainer.report import (
    Series,
    fmt_num,
    linear_ticks,
    log_ticks,
    render_html,
    svg_bar_chart,
    svg_line_plot,
)

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}

# A trimmed copy of out/demo/report.json (``metasignal demo --events 40000``), so the tests
# never depend on out/ existing.
SAMPLE: dict[str, Any] = {
    "model": {"name": "meta", "version": 1},
    "strategy": "optimal_threshold",
    "strategy_reason": (
        "auto: positive rate 1.91% < 2% -> smote_enhanced; guard: smote_enhanced worse than "
        "optimal_threshold beyond fold noise"
    ),
    "fallbacks": [],
    "threshold": 0.2584169398350532,
    "metric": "f1",
    "objective": {
        "metric": "f1",
        "beta": 1.0,
        "min_recall": 0.0,
        "min_precision": 0.0,
        "gain": 1.0,
        "cost": 1.0,
    },
    "holdout": {
        "f1": 0.4689265536723164,
        "precision": 0.4368421052631579,
        "recall": 0.5060975609756098,
        "pr_auc": 0.4194580340891875,
        "brier": 0.013456547142266235,
        "n": 9000,
        "positives": 164,
        "predicted_positives": 190,
        "observed_rate": 0.018222222222222223,
        "expected_rate": 0.020494196886804688,
        "threshold": 0.2584169398350532,
    },
    "validation": {
        "metric": "f1",
        "chosen": {"strategy": "optimal_threshold", "mean": 0.457152645353082},
        "strategies": {
            "smote_enhanced": {
                "strategy": "smote_enhanced",
                "mean": 0.43749283653554283,
                "std": 0.053829793313479125,
                "fold_values": [0.38983, 0.524138, 0.428571, 0.447761, 0.397163],
                "fold_thresholds": [0.113781, 0.172185, 0.304956, 0.191136, 0.325359],
                "threshold": 0.22148329304276476,
                "fit_seconds": 0.24653025700001763,
                "fallbacks": [],
                "skipped_folds": [],
            },
            "optimal_threshold": {
                "strategy": "optimal_threshold",
                "mean": 0.457152645353082,
                "std": 0.04815668717434125,
                "fold_values": [0.396226, 0.525547, 0.472973, 0.459016, 0.432],
                "fold_thresholds": [0.129869, 0.278721, 0.273766, 0.238302, 0.371426],
                "threshold": 0.2584169398350532,
                "fit_seconds": 0.23723653899997998,
                "fallbacks": [],
                "skipped_folds": [],
            },
        },
        "oof_brier": 0.013407399826350955,
    },
    "training": {
        "rows": 21000,
        "positives": 401,
        "positive_rate": 0.019095238095238096,
        "start": "2024-01-01T00:00:50.906000Z",
        "end": "2024-01-15T13:59:52.490000Z",
    },
    "holdout_period": {
        "start": "2024-01-15T14:00:27.704000Z",
        "end": "2024-01-21T19:59:27.898000Z",
    },
    "published": "published model refitted on all 30000 rows (training period + holdout)",
    "member_weights": {
        "m1": -0.17039609613979959,
        "m2": 0.0920315604666757,
        "m3": 0.3150355176507952,
        "m4": 0.4376965325866302,
        "m7": 1.0307871436345217,
        "m8": 1.3207949942176551,
    },
    "intercept": -4.068044565906795,
    "calibration": {"method": "platt", "slope": 0.8802653443551484, "intercept": -3.924151},
    "plots": {
        "metric_vs_threshold": {
            "threshold": [0.977617, 0.713417, 0.522012, 0.333006, 0.264698, 0.17752, 0.1125,
                          0.058634, 0.02278, 0.005, 0.0004, 0.0],
            "value": [0.006006, 0.225064, 0.346667, 0.444444, 0.4608, 0.444444, 0.421256,
                      0.345975, 0.25, 0.12, 0.05, 0.036],
            "metric": "f1",
            "chosen": 0.2584169398350532,
            "source": "walk-forward out-of-fold predictions (training period)",
        },
        "pr_curve": {
            "recall": [0.006098, 0.109756, 0.304878, 0.506098, 0.670732, 0.847561, 0.945122, 1.0],
            "precision": [1.0, 0.580645, 0.549451, 0.436842, 0.280612, 0.200577, 0.13549, 0.018],
            "chosen": {"recall": 0.5060975609756098, "precision": 0.4368421052631579},
            "source": "holdout",
        },
        "calibration": {
            "predicted": [4.48e-06, 2.48e-05, 7.62e-05, 0.000183, 0.000408, 0.000886, 0.00198,
                          0.00492, 0.01568, 0.18077],
            "observed": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.003333, 0.015556, 0.163333],
            "count": [900] * 10,
            "source": "holdout",
        },
    },
    "fit_seconds": 0.5935770919999754,
    "libraries": {"python": "3.11.7", "numpy": "2.4.6", "scikit-learn": "1.9.1"},
}  # fmt: skip


class StrictParser(HTMLParser):
    """Records every tag and reports any unbalanced or misnested element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.starts: list[tuple[str, dict[str, str | None]]] = []
        self.rows: list[tuple[dict[str, str | None], list[str]]] = []
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.starts.append((tag, dict(attrs)))
        if tag == "tr":
            self.rows.append((dict(attrs), []))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.starts.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            self.errors.append(f"end tag for void element <{tag}>")
        elif not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if self.rows and "tr" in self.stack:
            self.rows[-1][1].append(data)

    def count(self, tag: str) -> int:
        return sum(1 for t, _ in self.starts if t == tag)


def parse(document: str) -> StrictParser:
    parser = StrictParser()
    parser.feed(document)
    parser.close()
    assert parser.errors == []
    assert parser.stack == [], f"unclosed: {parser.stack}"
    return parser


def sample(**changes: Any) -> dict[str, Any]:
    report = copy.deepcopy(SAMPLE)
    report.update(changes)
    return report


def test_full_report_is_well_formed_and_self_contained() -> None:
    document = render_html(sample())
    parser = parse(document)
    assert document.startswith("<!doctype html>")
    assert parser.count("svg") == document.count("</svg>") == 4  # 3 curves + weights
    # Nothing may be fetched or executed.
    assert parser.count("script") == parser.count("link") == parser.count("img") == 0
    assert "http://" not in document.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in document
    assert not re.search(r"\bnan\b", document, re.IGNORECASE)


@pytest.mark.parametrize("absent", ["pr_curve", "metric_vs_threshold", "calibration"])
def test_one_svg_per_available_plot(absent: str) -> None:
    report = sample()
    del report["plots"][absent]
    parser = parse(render_html(report))
    assert parser.count("svg") == 3  # two remaining curves + weights


def test_chosen_threshold_is_shown_and_marked() -> None:
    document = render_html(sample())
    assert "0.2584" in document
    assert "chosen 0.2584" in document  # the vertical line's label
    assert "t = 0.2584" in document  # the PR operating point's label


@pytest.mark.parametrize(
    "where",
    ["member", "strategy", "reason", "fallback", "library", "published", "metric", "source"],
)
def test_strings_are_escaped(where: str) -> None:
    evil = '<script>alert("x")</script>'
    report = sample()
    if where == "member":
        report["member_weights"][evil] = -0.5
    elif where == "strategy":
        report["validation"]["strategies"][evil] = report["validation"]["strategies"].pop(
            "smote_enhanced"
        )
    elif where == "reason":
        report["strategy_reason"] = evil
    elif where == "fallback":
        report["fallbacks"] = [evil]
    elif where == "library":
        report["libraries"][evil] = evil
    elif where == "published":
        report["published"] = evil
    elif where == "metric":
        report["plots"]["metric_vs_threshold"]["metric"] = evil
    else:
        report["plots"]["pr_curve"]["source"] = evil
    document = render_html(report)
    assert "<script" not in document.lower()
    assert "&lt;script&gt;" in document
    parse(document)


def test_no_holdout_and_no_plots_render() -> None:
    report = sample(holdout=None, holdout_period=None, plots={})
    document = render_html(report)
    parser = parse(document)
    assert parser.count("svg") == 1  # only the member weights remain
    assert "No holdout period" in document


def test_minimal_report_renders() -> None:
    parser = parse(render_html({"model": {"name": "meta", "version": 2}}))
    assert parser.count("svg") == 0


def test_missing_pieces_inside_blocks_render() -> None:
    report = sample(plots=None, member_weights={}, libraries=None, validation=None)
    report["holdout"]["pr_auc"] = None
    report["holdout"]["observed_rate"] = None
    document = render_html(report)
    assert parse(document).count("svg") == 0
    assert "PR-AUC</th><td>—" in document


def test_each_strategy_row_appears_and_chosen_is_highlighted() -> None:
    parser = parse(render_html(sample()))
    rows = {attrs.get("data-strategy"): (attrs, "".join(text)) for attrs, text in parser.rows}
    for name, summary in SAMPLE["validation"]["strategies"].items():
        attrs, text = rows[name]
        assert name in text
        assert fmt_num(summary["threshold"]) in text
        assert f"{summary['mean']:.4f}" in text
        assert f"{summary['fold_values'][1]:.3f}" in text
        assert (attrs.get("class") == "chosen") == (name == SAMPLE["strategy"])


def test_weights_sorted_by_magnitude_with_negative_colour() -> None:
    weights = {"small": 0.1, "neg": -2.0, "big": 1.0}
    svg = svg_bar_chart(sorted(weights.items(), key=lambda kv: -abs(kv[1])), title="w")
    document = render_html(sample(member_weights=weights))
    chart = re.search(r"<svg[^>]*aria-label=\"member weights\".*?</svg>", document, re.S)
    assert chart is not None
    labels = re.findall(r'text-anchor="end">([^<]+)</text>', chart.group(0))
    assert labels[:3] == ["neg", "big", "small"]
    fills = re.findall(r'<rect [^>]*fill="(#[0-9a-f]+)"', svg)
    assert fills[0] != fills[1] == fills[2]


def test_nan_breaks_the_line_instead_of_leaking() -> None:
    svg = svg_line_plot(
        [Series([0.1, 0.2, 0.3, 0.4, 0.5], [0.1, math.nan, 0.3, None, 0.5])],
        title="t",
        x_label="x",
        y_label="y",
    )
    parse(svg)
    path = re.search(r'<path d="([^"]+)"', svg)
    assert path is not None
    assert path.group(1).count("M") == 3 and "L" not in path.group(1)
    assert "nan" not in svg.lower()


def test_plot_without_finite_data_still_is_one_svg() -> None:
    svg = svg_line_plot([Series([math.nan], [None])], title="t", x_label="x", y_label="y")
    assert parse(svg).count("svg") == 1
    assert "no finite data" in svg


def test_calibration_uses_log_axes_for_rare_probabilities() -> None:
    document = render_html(sample())
    assert "Log–log axes" in document
    assert "1e-6" in document  # decade ticks reach the smallest predicted probability
    report = sample()
    report["plots"]["calibration"].update(predicted=[0.1, 0.3, 0.5], observed=[0.0, 0.35, 0.5])
    assert "Linear axes" in render_html(report)


def test_ticks_are_round_and_cover_the_range() -> None:
    lo, hi, ticks = linear_ticks(0.006, 0.4608)
    assert lo <= 0.006 and hi >= 0.4608
    assert ticks == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    assert linear_ticks(2.0, 2.0)[2]  # a degenerate range still gets ticks
    lo, hi, ticks = log_ticks(4.5e-6, 0.18)
    assert (lo, hi) == (1e-6, 1.0)
    assert all(math.log10(t) == round(math.log10(t)) for t in ticks)
