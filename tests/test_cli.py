from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from metasignal.trainer.cli import main

REPO = Path(__file__).resolve().parent.parent
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z in epoch ms
KEY = "cli-signing-key-0123456789abcdef"  # signs the module's fitted model


def fit_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["fit", "--data", str(data), "--label", "label", "--time", "ts", "--out", str(out),
            "--quiet", *extra]  # fmt: skip


def tampered_copy(fitted: Path, folder: Path) -> Path:
    """The fitted model with its threshold changed after signing."""
    model = json.loads((fitted / "model.json").read_text())
    model["threshold"]["value"] = 0.001
    tampered = folder / "model.json"
    tampered.write_text(json.dumps(model))
    return tampered


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory, committee_csv: Path) -> Path:
    out = tmp_path_factory.mktemp("fit")
    env = {**os.environ, "METASIGNAL_SIGNING_KEY": KEY}
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
    monkeypatch.setenv("METASIGNAL_SIGNING_KEY", KEY)
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
    monkeypatch.setenv("METASIGNAL_SIGNING_KEY", KEY)
    tampered = tampered_copy(fitted, tmp_path)
    code = main(["evaluate", "--model", str(tampered), "--data", str(committee_csv),
                 "--label", "label"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert "signature does not match" in err


def test_inspect_shows_strategy_threshold_and_weights(
    fitted: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METASIGNAL_SIGNING_KEY", KEY)
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
    assert main(["evaluate", "--model", str(tmp_path / "b" / "model.json"), "--data",
                 str(committee_csv), "--label", "label"]) == 2  # fmt: skip
    assert "artifact is unsigned" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path / "b" / "model.json")]) == 0
    assert "signature   UNSIGNED (local experiment)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--label", "nope"], "label column 'nope' not found"),
        (["--holdout", "0.95"], "--holdout must lie in"),
        (["--timezone", "CEST"], "unknown --timezone 'CEST'"),
        (["--entity", "m1"], "the entity column 'm1' cannot be a member"),
    ],
)
def test_bad_flags_are_one_line_errors(
    committee_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, argv: list[str], message: str,
) -> None:  # fmt: skip
    monkeypatch.setenv("METASIGNAL_SIGNING_KEY", "k" * 32)
    if argv[0] == "--entity":
        argv = [*argv, "--members", "m1,m2"]
    assert main([*fit_args(committee_csv, tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1


def test_too_few_positives_for_the_folds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METASIGNAL_SIGNING_KEY", "k" * 32)
    rows = ["ts,a,label"] + [f"{T0 + i},{(i % 10) / 10},{int(i % 50 == 0)}" for i in range(400)]
    data = tmp_path / "few.csv"
    data.write_text("\n".join(rows) + "\n")
    assert main(fit_args(data, tmp_path / "out")) == 2
    assert "positives in the training period" in capsys.readouterr().err


def test_readme_configuration_table_matches_the_settings() -> None:
    from metasignal.stream.config import KAFKA_SETTINGS, SIGNING_KEY_DOC, settings_markdown
    from metasignal.stream.options import SCORER_SETTINGS
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
        "heavy = ('imblearn', 'pandas', 'metasignal.trainer.fit', "
        "'metasignal.trainer.meta_model'); "
        "print(any(m in sys.modules for m in heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--strategy", "nope"], "argument --strategy: invalid choice: 'nope'"),
        (["--metric", "nope"], "argument --metric: invalid choice: 'nope'"),
        (["--splits", "1"], "argument --splits: must be at least 2, got 1"),
        (["--splits", "two"], "argument --splits: must be an integer, got 'two'"),
        (["--time-unit", "h"], "argument --time-unit: invalid choice: 'h'"),
    ],
)
def test_a_wrong_flag_is_one_line_not_the_usage(
    committee_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    argv: list[str], message: str,
) -> None:  # fmt: skip
    with pytest.raises(SystemExit) as info:
        main([*fit_args(committee_csv, tmp_path), *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"metasignal fit: error: {message}")
    assert err.count("\n") == 1
    assert "usage:" not in err


def test_fit_prints_the_members_it_chose_and_what_it_left_out(
    fitted: Path, committee_csv: Path
) -> None:
    env = {**os.environ, "METASIGNAL_SIGNING_KEY": KEY}
    out = fitted.parent / "again"
    result = subprocess.run(
        [sys.executable, "-m", "metasignal.trainer.cli",
         *fit_args(committee_csv, out)[:-1], "--strategy", "optimal_threshold"],
        env=env, cwd=REPO, capture_output=True, text=True, check=True,
    )  # fmt: skip
    summary = json.loads(result.stdout)
    assert summary["members"] == [f"m{j}" for j in range(1, 9)]
    assert summary["left_out"] == {"id": "not numeric (e.g. 'evt-0000001')"}
    assert summary["time"] == "epoch ms since 1970-01-01 UTC"
    assert "members (8): m1, m2, m3, m4, m5, m6, m7, m8; left out: id (not numeric" in (
        result.stderr
    )


def test_fit_errors_name_the_real_row_without_numpy_reprs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METASIGNAL_SIGNING_KEY", "k" * 32)
    rows = ["ts,a,label"] + [f"{T0 + i},0.5,{i % 2}" for i in range(200)]
    rows[102 - 1] = "1704067250135x,0.5,0"
    bad_time = tmp_path / "bad_time.csv"
    bad_time.write_text("\n".join(rows) + "\n")
    assert main(fit_args(bad_time, tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert err == (
        "metasignal: error: time column 'ts' row 102: '1704067250135x' is not a number\n"
    )
    rows[102 - 1] = f"{T0 + 101},2.0,0"
    bad_vote = tmp_path / "bad_vote.csv"
    bad_vote.write_text("\n".join(rows) + "\n")
    assert main(fit_args(bad_vote, tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert "member column 'a' row 102: 2 is outside [0, 1]; every numeric column" in err
    assert "np.float64" not in err


def test_evaluate_out_of_range_names_the_model_not_a_missing_flag(
    fitted: Path, committee_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("METASIGNAL_SIGNING_KEY", KEY)
    lines = committee_csv.read_text().splitlines()[:50]
    cells = lines[9].split(",")
    cells[2] = "1.5"
    lines[9] = ",".join(cells)
    data = tmp_path / "later.csv"
    data.write_text("\n".join(lines) + "\n")
    argv = ["evaluate", "--model", str(fitted / "model.json"), "--data", str(data),
            "--label", "label"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "member column 'm1' row 10: 1.5 is outside [0, 1]; model meta v1 takes" in err
    assert "--raw-scores" not in err
    # Without --time the rows are scored in file order (this used to fail on time=None).
    data.write_text(committee_csv.read_text())
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 20000


def test_inspect_refuses_a_report_but_shows_any_artifact(
    fitted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.delenv("METASIGNAL_SIGNING_KEY", raising=False)
    assert main(["inspect", str(fitted / "report.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("metasignal: error: report.json is not a metasignal artifact")
    assert main(["inspect", str(fitted / "model.json")]) == 0
    out = capsys.readouterr().out
    assert "HMAC-SHA256 key_id" in out and "not verified (no key)" in out
    assert "threshold" in out and "m8" in out and "training" in out
    monkeypatch.setenv("METASIGNAL_SIGNING_KEY", "another-signing-key-0123456789abcdef")
    assert main(["inspect", str(fitted / "model.json")]) == 2
    captured = capsys.readouterr()
    assert "DOES NOT VERIFY" in captured.out and "m8" in captured.out
    assert captured.err.count("\n") == 1
    monkeypatch.setenv("METASIGNAL_SIGNING_KEY", KEY)
    assert main(["inspect", "--json", str(fitted / "model.json")]) == 0
    assert json.loads(capsys.readouterr().out)["members"][0] == "m1"


def test_unsigned_never_ignores_a_configured_key(
    fitted: Path, committee_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("METASIGNAL_SIGNING_KEY", KEY)
    tampered = tampered_copy(fitted, tmp_path)
    argv = ["evaluate", "--model", str(tampered), "--data", str(committee_csv), "--label",
            "label", "--unsigned"]  # fmt: skip
    assert main(argv) == 2
    assert "signature does not match" in capsys.readouterr().err
    out = tmp_path / "fit"
    assert main([*fit_args(committee_csv, out), "--unsigned", "--strategy",
                 "optimal_threshold"]) == 0  # fmt: skip
    signed = json.loads((out / "model.json").read_text())
    assert signed["signature"]["algorithm"] == "HMAC-SHA256"


def test_fit_reads_a_panel_with_zone_free_times_and_an_entity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas as pd

    from metasignal.trainer.synthetic import generate_committee

    monkeypatch.setenv("METASIGNAL_SIGNING_KEY", "k" * 32)
    c = generate_committee(n_events=4000, n_members=3, positive_rate=0.05, seed=2)
    frame = pd.DataFrame(c.votes, columns=list(c.members))
    frame.insert(0, "date", pd.to_datetime(c.time_ms, unit="ms"))  # to_csv writes no zone
    frame.insert(1, "permno", 10_000 + np.arange(len(c)) % 7)
    frame["label"] = c.labels
    frame.to_csv(tmp_path / "panel.csv", index=False)
    argv = ["fit", "--data", str(tmp_path / "panel.csv"), "--label", "label", "--time", "date",
            "--entity", "permno", "--timezone", "America/New_York", "--out",
            str(tmp_path / "out"), "--quiet", "--strategy", "optimal_threshold"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["members"] == ["m1", "m2", "m3"]
    assert summary["time"] == "times have no zone; read as America/New_York (--timezone)"
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    block = report["input"]
    assert block["time"]["timezone"] == "America/New_York"
    assert block["entity_column"] == "permno"
    assert block["entities"]["count"] == 7
    assert sum(e["rows"] for e in block["entities"]["per_entity"]) == 4000
    first = int(pd.Timestamp(c.time_ms[0], unit="ms").tz_localize("America/New_York").value)
    assert report["training"]["start"].startswith(
        pd.Timestamp(first).tz_localize("UTC").strftime("%Y-%m-%dT%H:%M:%S")
    )


def test_synth_ids_and_start_follow_the_seed_and_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pandas as pd

    frames = {}
    for name, extra in {
        "a": ["--seed", "1"],
        "b": ["--seed", "2"],
        "c": ["--seed", "1", "--start", "2024-06-01 09:30"],
    }.items():
        assert main(["synth", "--out", str(tmp_path / f"{name}.csv"), "--events", "500",
                     *extra]) == 0  # fmt: skip
        frames[name] = pd.read_csv(tmp_path / f"{name}.csv")
    reports = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["first_id"] for r in reports] == [
        "evt-20240101T000000-s1-0000001",
        "evt-20240101T000000-s2-0000001",
        "evt-20240601T093000-s1-0000001",
    ]
    for x, y in (("a", "b"), ("a", "c"), ("b", "c")):
        assert not set(frames[x]["id"]) & set(frames[y]["id"])
    c_start = int(pd.Timestamp("2024-06-01 09:30", tz="UTC").value // 1_000_000)
    assert c_start <= frames["c"]["ts"].iloc[0] < c_start + 60_000
    assert frames["a"]["ts"].iloc[0] != frames["b"]["ts"].iloc[0]  # the jitter follows the seed
    assert reports[2]["start"].startswith("2024-06-01T09:30")


def test_synth_label_shift_moves_the_votes_with_the_rate(tmp_path: Path) -> None:
    import pandas as pd

    frames = {}
    for name, extra in (("label", ["--label-shift"]), ("threshold", [])):
        out = tmp_path / f"{name}.csv"
        argv = ["synth", "--out", str(out), "--events", "40000", "--positive-rate", "0.02",
                "--rate-step", "0.5:0.2", *extra]  # fmt: skip
        assert main(argv) == 0
        frames[name] = pd.read_csv(out)
    for frame in frames.values():
        assert frame["label"].iloc[:20000].mean() < 0.03 < 0.15 < frame["label"].iloc[20000:].mean()
    # A label shift brings more confident votes with the positives; a threshold step does not.
    label, threshold = frames["label"]["m8"], frames["threshold"]["m8"]
    assert label.iloc[20000:].median() > 2 * label.iloc[:20000].median()
    assert threshold.iloc[20000:].median() < 1.2 * threshold.iloc[:20000].median()


def test_synth_steps_the_rate_and_decays_a_member(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    out = tmp_path / "drift.csv"
    argv = ["synth", "--out", str(out), "--events", "40000", "--positive-rate", "0.02",
            "--rate-step", "0.5:0.2", "--decaying-member", "m8", "--decay-start", "0.25",
            "--time-format", "iso"]  # fmt: skip
    assert main(argv) == 0
    frame = pd.read_csv(out)
    assert str(frame["ts"].iloc[0]).endswith("Z")
    first, second = frame.iloc[:20000], frame.iloc[20000:]
    assert first["label"].mean() < 0.03 < 0.15 < second["label"].mean()
    late = frame.iloc[-8000:]
    assert roc_auc_score(first["label"], first["m8"]) > 0.8
    assert roc_auc_score(late["label"], late["m8"]) < 0.6  # faded to (almost) nothing
    assert roc_auc_score(late["label"], late["m7"]) > 0.8
    for bad, message in (
        (["--rate-step", "0.5"], "argument --rate-step: must be AT:RATE"),
        (["--decaying-member", "m9"], "--decaying-member 'm9': name a member m1..m8"),
        (["--start", "soon"], "--start 'soon': 'soon' is not a time"),
        (["--rate-step", "0.7:0.1", "--rate-step", "0.2:0.1"], "strictly increasing"),
        (["--out", str(tmp_path / "no" / "dir.csv")], "No such file or directory"),
    ):
        capsys.readouterr()
        try:
            code = main(["synth", "--out", str(out), "--events", "10", *bad])
        except SystemExit as exit_:
            code = int(exit_.code or 0)
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.count("\n") == 1, err


def test_readme_later_csv_is_made_by_synth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import shlex

    import pandas as pd

    text = (REPO / "README.md").read_text()
    block = text.split("## Training a meta-model", 1)[1].split("```sh\n", 1)[1].split("```")[0]
    commands = [shlex.split(line.split("#")[0]) for line in block.splitlines()]
    commands = [c[1:] for c in commands if c[:1] == ["metasignal"]]
    made: list[str] = []
    monkeypatch.chdir(tmp_path)
    for argv in commands:
        if argv[0] == "synth":
            assert main(argv) == 0
            made.append(argv[argv.index("--out") + 1])
        if "--data" in argv:
            assert argv[argv.index("--data") + 1] in made, argv
    assert made == ["votes.csv", "later.csv"]
    votes, later = pd.read_csv("votes.csv"), pd.read_csv("later.csv")
    assert later["ts"].min() > votes["ts"].max()  # later really is later
    assert not set(votes["id"]) & set(later["id"])


def test_inspect_tells_a_broken_schema_from_a_broken_signature(
    fitted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from metasignal.stream.artifact import dumps_artifact, sign_artifact

    monkeypatch.setenv("METASIGNAL_SIGNING_KEY", KEY)
    model = json.loads((fitted / "model.json").read_text())
    model["threshold"]["value"] = 2.0
    broken = tmp_path / "model.json"
    broken.write_text(dumps_artifact(sign_artifact(model, KEY.encode())))
    assert main(["inspect", str(broken)]) == 2
    captured = capsys.readouterr()
    assert "(verified)" in captured.out
    assert "schema      INVALID: artifact field 'threshold.value' must lie in [0, 1]" in (
        captured.out
    )
    assert captured.err == (
        "metasignal: error: model.json: artifact field 'threshold.value' must lie in [0, 1]\n"
    )
