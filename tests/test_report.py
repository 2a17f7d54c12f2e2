"""The fit report: truthful, self-contained, escaped, robust to gaps, plots from matplotlib."""

from __future__ import annotations

import base64
import copy
import io
import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.image import imread

from metasignal.trainer.cli import main
from metasignal.trainer.fit import FitConfig, fit_meta_model
from metasignal.trainer.report import fmt_num, holdout_warnings, render_html
from metasignal.trainer.synthetic import Committee, generate_committee
from tests.conftest import vote_table

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}

# A trimmed report.json of a small demo fit, so the tests never depend on out/ existing.
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
            "folds": [
                [0.0, 0.2, 0.33, 0.43, 0.47, 0.45, 0.41, 0.33, 0.24, 0.11, 0.05, 0.036],
                [0.01, 0.25, 0.36, 0.46, 0.45, 0.44, 0.43, 0.36, 0.26, 0.13, 0.05, 0.036],
            ],
            "metric": "f1",
            "chosen": 0.2584169398350532,
            "source": "the 2 walk-forward validation folds of the training period",
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
    "sizing": {
        "rule": {"method": "probability", "cap": 1.0, "step": 0.0},
        "description": "López de Prado: 2Φ(z) − 1, z = (p − p*) / √(p (1 − p)); capped at 1",
        "holdout_trades": 190,
        "holdout_mean_size": 0.41,
        "holdout_zero_size_trades": 0,
        "holdout_histogram": {"edges": [0.0, 0.25, 0.5, 0.75, 1.0], "counts": [80, 60, 40, 10]},
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


def images(document: str) -> dict[str, np.ndarray]:
    """Every embedded figure, decoded: ``{data-plot name: RGBA pixels}``."""
    out = {}
    for name, data in re.findall(
        r'<figure data-plot="([^"]+)"><img src="data:image/png;base64,([^"]+)"', document
    ):
        out[name] = imread(io.BytesIO(base64.b64decode(data)), format="png")
    assert len(out) == document.count("<img"), "an image that is not a PNG figure"
    return out


def drawn(pixels: np.ndarray) -> bool:
    """The image holds a drawing (many distinct colours), not a blank canvas."""
    return (
        pixels.shape[0] > 100 and len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 20
    )


def headings(document: str) -> list[str]:
    return re.findall(r"<h2>([^<]+)</h2>", document)


@pytest.fixture(scope="module")
def document() -> str:
    """The sample report, drawn once (drawing is most of these tests' time)."""
    return render_html(sample())


def test_full_report_is_well_formed_self_contained_and_drawn(document: str) -> None:
    parser = parse(document)
    assert document.startswith("<!doctype html>")
    figures = images(document)
    assert set(figures) == {"threshold", "pr", "calibration", "sizing", "weights"}
    assert all(drawn(pixels) for pixels in figures.values())
    # Nothing may be fetched or executed; the only images are inline PNGs.
    assert parser.count("script") == parser.count("link") == parser.count("svg") == 0
    assert "http://" not in document and "https://" not in document
    assert not re.search(r"\bnan\b", document, re.IGNORECASE)
    for tag, attrs in parser.starts:
        if tag == "img":
            assert attrs.get("alt") and int(attrs["width"] or 0) > 0


@pytest.mark.parametrize(
    "absent, name",
    [("pr_curve", "pr"), ("metric_vs_threshold", "threshold"), ("calibration", "calibration")],
)
def test_one_figure_per_available_plot(absent: str, name: str) -> None:
    report = sample()
    del report["plots"][absent]
    figures = images(render_html(report))
    assert name not in figures and len(figures) == 4


def test_figures_that_cannot_be_drawn_leave_a_note_not_a_crash() -> None:
    report = sample()
    report["plots"]["calibration"] = {"predicted": "garbage", "observed": None}
    report["sizing"]["rule"] = {"method": "kelly"}  # no payoff ratio: unreadable
    document = render_html(report)
    parse(document)
    assert "Unreadable sizing rule" in document
    assert "reliability curve: cannot be drawn (no finite points to draw)" in document
    assert set(images(document)) == {"threshold", "pr", "weights"}


def test_threshold_caption_says_what_the_code_does(document: str) -> None:
    assert "mean of its fold thresholds" not in document
    assert "averaged over the 2 walk-forward validation folds" in document
    assert "candidate where this mean peaks" in document
    # The strategy table contrasts the rule with the mean of the fold thresholds.
    fold_mean = np.mean(SAMPLE["validation"]["strategies"]["optimal_threshold"]["fold_thresholds"])
    assert f"which is {fmt_num(float(fold_mean))} for the chosen one" in document


def test_the_threshold_chart_is_the_curve_the_threshold_is_chosen_on(
    committee: Committee,
) -> None:
    table = vote_table(committee)
    outcome = fit_meta_model(table, FitConfig(estimator={"strategy": "optimal_threshold"}))
    report = outcome.report
    curve = report["plots"]["metric_vs_threshold"]
    folds = np.array(curve["folds"])
    value = np.array(curve["value"])
    evidence = outcome.model.walk_forward_["optimal_threshold"]
    assert folds.shape == (len(evidence.fold_values), len(curve["threshold"]))
    np.testing.assert_allclose(value, folds.mean(axis=0), rtol=0, atol=1e-12)
    # The plotted mean peaks exactly at the published threshold (ties: the higher one).
    best = np.flatnonzero(np.isclose(value, value.max(), rtol=0, atol=1e-12))
    assert curve["threshold"][best[-1]] == report["threshold"] == curve["chosen"]
    assert "threshold" in images(render_html(report))


SAFE = {
    "n": 9000,
    "positives": 164,
    "predicted_positives": 190,
    "f1": 0.47,
    "precision": 0.44,
    "observed_rate": 0.0182,
    "expected_rate": 0.0205,
}


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"positives": 29}, "only 29 positives in the holdout (fewer than 30)"),
        ({"f1": 0.0, "predicted_positives": 0}, "holdout F1 is 0: the model never signalled"),
        ({"f1": 0.0, "precision": 0.0}, "none of its 190 signals was a positive"),
        ({"predicted_positives": 4590}, "signals on 51% of holdout events against a realized"),
        ({"predicted_positives": 40}, "signals on 0.444% of holdout events"),
        ({"expected_rate": 0.08}, "mean predicted probability 8% against a realized rate"),
        ({"precision": 0.0142, "observed_rate": 0.0151}, "no better than the base rate 1.51%"),
    ],
)
def test_holdout_warnings(changes: dict[str, Any], expected: str) -> None:
    assert holdout_warnings(SAFE) == []
    warnings = holdout_warnings({**SAFE, **changes})
    assert any(expected in w for w in warnings), warnings


def test_warnings_lead_the_page_before_the_figures_they_qualify() -> None:
    changes = {"positives": 12, "f1": 0.0, "precision": 0.0, "predicted_positives": 4590}
    document = render_html(sample(holdout={**SAMPLE["holdout"], **changes}, warnings=["x"]))
    block = re.search(r'<div class="warn" data-warnings>.*?</div>', document, re.S)
    assert block is not None
    for text in ("only 12 positives", "holdout F1 is 0", "signals on 51% of holdout", "x"):
        assert text in block.group(0)
    assert document.index("data-warnings") < document.index("<th>Strategy</th>")


def test_a_healthy_holdout_has_no_warning_block_and_no_verdict(document: str) -> None:
    assert "data-warnings" not in document
    assert "Verdict" not in headings(document)


@pytest.mark.parametrize("passed", [True, False])
def test_the_skill_verdict_leads_when_the_fit_made_one(passed: bool) -> None:
    # The shape of trainer/skill.py's SkillVerdict.to_dict().
    skill = {
        "verdict": "skill" if passed else "no skill (overridden by --allow-no-skill)",
        "skilled": passed,
        "reason": "out-of-fold PR-AUC vs base rate, rotation permutation test",
        "overridden": not passed,
        "alpha": 0.05,
        "pr_auc": 0.07 if passed else 0.031,
        "base_rate": 0.03,
        "lift": 2.31 if passed else 1.02,
        "lift_interval": [1.8, 2.9] if passed else [0.8, 1.3],
        "p_value": 0.001 if passed else 0.41,
        "beats_abstain": passed,
    }
    document = render_html(sample(skill=skill))
    parse(document)
    assert headings(document)[0] == "Verdict"
    # The verdict comes straight under the title, before everything the fit reports.
    assert document.index('class="verdict') < document.index("<th>Strategy</th>")
    head = "Evidence of skill" if passed else "No evidence of skill"
    assert f'<div class="head">{head}</div>' in document
    assert ("[1.8, 2.9]" if passed else "[0.8, 1.3]") in document
    assert ("p-value</th><td>0.41<" in document) != passed
    assert ("the gate was overridden" in document) == (not passed)
    assert f'data-verdict="{"pass" if passed else "fail"}"' in document


def test_blocks_written_by_other_fit_steps_render_when_present() -> None:
    pnl = {
        "trades": 190,
        "hit_rate": 0.44,
        "hit_rate_interval": [0.37, 0.51],
        "sharpe_per_trade": 0.9,
        "sharpe_per_trade_interval": [-0.1, 1.8],
    }
    validation = copy.deepcopy(SAMPLE["validation"])
    validation["pnl"] = {**pnl, "trades": 812}
    validation["threshold_uncertainty"] = {
        "threshold": 0.2584,
        "fold_min": 0.13,
        "fold_max": 0.371,
        "fold_std": 0.09,
        "bootstrap_interval": [0.2, 0.31],
    }
    validation["purge"] = {
        "label_horizon_ms": 5 * 86_400_000,
        "label_end_column": False,
        "embargo_ms": 86_400_000,
        "folds": [{"train_rows": 3500, "validation_rows": 3500, "purged": 120, "embargoed": 35}],
        "holdout_purged": 118,
        "holdout_embargoed": 34,
    }
    validation["strategies"]["optimal_threshold"].update(
        purged_rows=600, embargoed_rows=170, abstain_values=[0.0, 0.0, 0.0, 0.0, 0.0]
    )
    holdout = {
        **SAMPLE["holdout"],
        "pnl": pnl,
        "intervals": {"f1": [0.41, 0.52], "precision": [0.38, 0.5], "recall": [0.4, 0.6]},
    }
    entities = {
        "column": "ticker",
        "count": 490,
        "with_positives": 301,
        "rows_per_entity": {"min": 120, "median": 134.0, "max": 134},
        "top": [{"entity": "<AAPL>", "rows": 134, "positives": 4}],
        "per_entity": [{"entity": "<AAPL>", "rows": 134, "positives": 4}] * 400,
    }
    report = sample(
        validation=validation,
        holdout=holdout,
        input={"timezone": "UTC", "time_unit": "ms", "members": ["m1", "m2"],
               "entities": entities},
    )  # fmt: skip
    document = render_html(report)
    parse(document)
    order = headings(document)
    for title in ("Money: PnL of the traded events", "Purge and embargo", "Input"):
        assert title in order
    assert "0.9 [-0.1, 1.8]" in document and "0.44 [0.37, 0.51]" in document
    assert "0.4689 [0.41, 0.52]" in document  # holdout F1 with its interval
    assert "span 0.13–0.371; 95% block-bootstrap interval [0.2, 0.31]" in document
    assert "Shaded: the threshold's 95% block-bootstrap interval." in document
    assert "Label horizon</th><td>5d" in document and "Embargo</th><td>1d" in document
    assert "600 purged, 170 embargoed training rows" in document
    assert 'data-strategy="abstain"' in document
    assert "&lt;AAPL&gt;" in document and document.count("&lt;AAPL&gt;") == 1  # top only
    assert "UTC" in document and "m1, m2" in document


def test_strings_are_escaped() -> None:
    evil = '<script>alert("x")</script>'
    report = sample(
        strategy_reason=evil,
        fallbacks=[evil],
        published=evil,
        skill={"verdict": evil, evil: evil},
        input={"entities": {"column": evil, "top": [{evil: evil}]}},
        warnings=[evil],
    )
    report["member_weights"][evil] = -0.5
    strategies = report["validation"]["strategies"]
    strategies[evil] = strategies.pop("smote_enhanced")
    report["libraries"][evil] = evil
    report["plots"]["metric_vs_threshold"]["metric"] = evil
    report["plots"]["calibration"]["source"] = evil
    document = render_html(report)
    assert "<script" not in document.lower()
    # reason, fallback, published, skill x2, entity x3, warning, member, strategy x2,
    # library x2, threshold alt text, calibration caption
    assert document.count("&lt;script&gt;") >= 16
    parse(document)


def test_no_holdout_and_no_plots_render() -> None:
    report = sample(holdout=None, holdout_period=None, plots={}, sizing=None)
    document = render_html(report)
    parse(document)
    assert set(images(document)) == {"weights"}
    assert "No holdout period" in document


def test_minimal_report_renders() -> None:
    document = render_html({"model": {"name": "meta", "version": 2}})
    assert parse(document).count("img") == 0
    assert "metasignal report: meta v2" in document


def test_missing_pieces_inside_blocks_render() -> None:
    report = sample(plots=None, member_weights={}, libraries=None, validation=None)
    report["holdout"]["pr_auc"] = None
    report["holdout"]["observed_rate"] = None
    document = render_html(report)
    assert set(images(document)) == {"sizing"}
    assert "PR-AUC</th><td>—" in document


def test_each_strategy_row_appears_and_chosen_is_highlighted(document: str) -> None:
    parser = parse(document)
    rows = {attrs.get("data-strategy"): (attrs, "".join(text)) for attrs, text in parser.rows}
    for name, summary in SAMPLE["validation"]["strategies"].items():
        attrs, text = rows[name]
        assert name in text
        assert fmt_num(summary["threshold"]) in text
        assert f"{summary['mean']:.4f}" in text
        assert f"{summary['fold_values'][1]:.3f}" in text
        assert (attrs.get("class") == "chosen") == (name == SAMPLE["strategy"])


def test_sizing_section_names_the_rule_and_the_holdout_sizes(document: str) -> None:
    assert "<h2>Position size</h2>" in document
    assert "López de Prado: 2Φ(z) − 1" in document
    assert "Mean size of a trade</th><td>0.41" in document


def test_drawing_stays_off_the_scorer_and_cli_import_paths() -> None:
    code = (
        "import sys\n"
        "import metasignal.trainer.cli, metasignal.stream.scorer, metasignal.trainer.report\n"
        "import metasignal.trainer.demo\n"
        "print('matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_fit_writes_its_holdout_warnings_to_report_json_and_stderr(
    tmp_path: Path, signing_key: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    small = generate_committee(n_events=3000, positive_rate=0.03, seed=5)
    small.to_csv(tmp_path / "votes.csv")
    code = main(["fit", "--data", str(tmp_path / "votes.csv"), "--label", "label", "--time",
                 "ts", "--out", str(tmp_path / "out"), "--splits", "3", "--quiet"])  # fmt: skip
    assert code == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    positives = report["holdout"]["positives"]
    assert positives < 30
    assert report["warnings"] == holdout_warnings(report["holdout"])
    assert f"only {positives} positives in the holdout" in report["warnings"][0]
    err = capsys.readouterr().err
    assert f"metasignal: warning: only {positives} positives in the holdout" in err
    assert f"only {positives} positives" in (tmp_path / "out" / "report.html").read_text()
