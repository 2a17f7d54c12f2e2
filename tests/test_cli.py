from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from metasignal.trainer.cli import main

REPO = Path(__file__).resolve().parent.parent


def fit_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["fit", "--data", str(data), "--label", "label", "--time", "ts", "--out", str(out),
            "--quiet", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory, committee_csv: Path) -> Path:
    out = tmp_path_factory.mktemp("fit")
    env = {**os.environ, "METASIGNAL_SIGNING_KEY": "cli-signing-key-0123456789abcdef"}
    subprocess.run(
        [sys.executable, "-m", "metasignal.trainer.cli", *fit_args(committee_csv, out)],
        check=True,
        env=env,
        cwd=REPO,
        capture_output=True,
    )
    return out


def test_fit_writes_model_report_and_html(fitted: Path) -> None:
    report = json.loads((fitted / "report.json").read_text())
    for key in ("strategy", "strategy_reason", "threshold", "metric", "fit_seconds"):
        assert key in report
    holdout = report["holdout"]
    assert set(holdout) >= {"f1", "precision", "recall", "pr_auc", "brier", "n", "positives"}
    assert holdout["n"] == 6000
    assert (fitted / "report.html").read_text().startswith("<!doctype html>")
    model = json.loads((fitted / "model.json").read_text())
    assert model["signature"]["algorithm"] == "HMAC-SHA256"
    assert model["metrics"]["holdout"]["f1"] == holdout["f1"]


def test_evaluate_prints_the_holdout_block(
    fitted: Path, committee_csv: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("METASIGNAL_SIGNING_KEY", "cli-signing-key-0123456789abcdef")
    code = main(["evaluate", "--model", str(fitted / "model.json"), "--data",
                 str(committee_csv), "--label", "label", "--time", "ts"])  # fmt: skip
    assert code == 0
    block = json.loads(capsys.readouterr().out)
    assert block["n"] == 20000
    assert 0.0 < block["f1"] <= 1.0


def test_tampered_model_exits_2_with_one_line(
    fitted: Path, committee_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("METASIGNAL_SIGNING_KEY", "cli-signing-key-0123456789abcdef")
    model = json.loads((fitted / "model.json").read_text())
    model["threshold"]["value"] = 0.001
    tampered = tmp_path / "model.json"
    tampered.write_text(json.dumps(model))
    code = main(["evaluate", "--model", str(tampered), "--data", str(committee_csv),
                 "--label", "label"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert "signature does not match" in err


def test_inspect_shows_strategy_threshold_and_weights(
    fitted: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METASIGNAL_SIGNING_KEY", "cli-signing-key-0123456789abcdef")
    assert main(["inspect", str(fitted / "model.json")]) == 0
    out = capsys.readouterr().out
    assert "verified" in out
    assert "threshold" in out
    assert "m8" in out


def test_fit_without_key_refuses_and_unsigned_is_marked(
    committee_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.delenv("METASIGNAL_SIGNING_KEY", raising=False)
    assert main(fit_args(committee_csv, tmp_path / "a")) == 2
    assert "no signing key" in capsys.readouterr().err
    assert main([*fit_args(committee_csv, tmp_path / "b"), "--unsigned",
                 "--strategy", "optimal_threshold"]) == 0  # fmt: skip
    model = json.loads((tmp_path / "b" / "model.json").read_text())
    assert model["signature"] == {"algorithm": "none", "unsigned": True}
    assert main(["inspect", str(tmp_path / "b" / "model.json")]) == 2
    assert main(["inspect", "--unsigned", str(tmp_path / "b" / "model.json")]) == 0
    assert "UNSIGNED" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--label", "nope"], "label column 'nope' not found"),
        (["--holdout", "0.95"], "--holdout must lie in"),
    ],
)
def test_bad_flags_are_one_line_errors(
    committee_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, argv: list[str], message: str,
) -> None:  # fmt: skip
    monkeypatch.setenv("METASIGNAL_SIGNING_KEY", "k" * 32)
    assert main([*fit_args(committee_csv, tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1


def test_too_few_positives_for_the_folds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METASIGNAL_SIGNING_KEY", "k" * 32)
    rows = ["ts,a,label"] + [f"{i},{(i % 10) / 10},{int(i % 50 == 0)}" for i in range(400)]
    data = tmp_path / "few.csv"
    data.write_text("\n".join(rows) + "\n")
    assert main(fit_args(data, tmp_path / "out")) == 2
    assert "positives in the training period" in capsys.readouterr().err


def test_readme_configuration_table_matches_the_settings() -> None:
    from metasignal.stream.config import (
        KAFKA_SETTINGS,
        SCORER_SETTINGS,
        SIGNING_KEY_DOC,
        settings_markdown,
    )
    from metasignal.trainer.settings import TRAINER_SETTINGS

    readme = (REPO / "README.md").read_text()
    assert settings_markdown((*KAFKA_SETTINGS, *SCORER_SETTINGS, SIGNING_KEY_DOC)) in readme
    assert settings_markdown(TRAINER_SETTINGS) in readme


def test_readme_starts_with_exactly_the_two_commands() -> None:
    text = (REPO / "README.md").read_text()
    block = text.split("```sh\n", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in block.strip().splitlines()] == [
        "make demo",
        "make test",
    ]


def test_strategy_choices_match_the_strategies() -> None:
    from metasignal.trainer.settings import STRATEGY_CHOICES
    from metasignal.trainer.strategies import META_STRATEGIES, SELECTABLE

    assert set(STRATEGY_CHOICES) == {*META_STRATEGIES, *SELECTABLE}


def test_the_scorer_command_does_not_load_the_fitting_code() -> None:
    code = (
        "import sys, metasignal.trainer.cli; metasignal.trainer.cli.build_parser(); "
        "heavy = ('imblearn', 'metasignal.trainer.fit', 'metasignal.trainer.meta_model'); "
        "print(any(m in sys.modules for m in heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
