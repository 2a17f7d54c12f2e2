from __future__ import annotations

import json

import numpy as np
import pytest

from metasignal.stream.artifact import (
    SIGNING_KEY_ENV,
    dumps_artifact,
    example_artifact,
    key_id,
    load_artifact,
    resolve_signing_keys,
    sign_artifact,
)
from metasignal.stream.errors import ArtifactError
from metasignal.stream.scoring import CompiledModel, sigmoid

KEY = b"k" * 32


def signed_text(**changes: object) -> str:
    doc = example_artifact(("a", "b", "c"))
    doc.update(changes)
    return dumps_artifact(sign_artifact(doc, KEY))


def test_round_trip_verifies_and_keeps_every_field() -> None:
    doc = load_artifact(signed_text(), keys=[KEY])
    assert doc["members"] == ["a", "b", "c"]
    assert doc["signature"]["key_id"] == key_id(KEY)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("threshold", "value"), 0.01),
        (("linear", "coef"), [1.0, 1.0, 1.0000001]),
        (("members",), ["a", "c", "b"]),
        (("model", "version"), 2),
    ],
)
def test_any_tampered_field_is_refused(path: tuple[str, ...], value: object) -> None:
    doc = json.loads(signed_text())
    node = doc
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    with pytest.raises(ArtifactError, match="signature does not match"):
        load_artifact(json.dumps(doc), keys=[KEY])


def test_wrong_key_refused_and_rotation_accepts_old_key() -> None:
    text = signed_text()
    with pytest.raises(ArtifactError, match="signature does not match"):
        load_artifact(text, keys=[b"other"])
    assert load_artifact(text, keys=[b"new-key", KEY])["model"]["name"] == "meta"


def test_unsigned_refused_unless_allowed_and_visible() -> None:
    text = dumps_artifact(sign_artifact(example_artifact(), None))
    with pytest.raises(ArtifactError, match="unsigned"):
        load_artifact(text, keys=[KEY])
    doc = load_artifact(text, keys=[], allow_unsigned=True)
    assert doc["signature"] == {"algorithm": "none", "unsigned": True}


def test_missing_signature_and_no_key_are_clear_errors() -> None:
    with pytest.raises(ArtifactError, match="no signature block"):
        load_artifact(json.dumps(example_artifact()), keys=[KEY])
    with pytest.raises(ArtifactError, match="no signing key configured"):
        load_artifact(signed_text(), keys=[])
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_artifact("{not json", keys=[KEY])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"schema_version": 99}, "schema_version"),
        ({"members": []}, "members"),
        ({"members": ["a", "a", "b"]}, "duplicate"),
        ({"linear": {"coef": [1.0, 2.0], "intercept": 0.0}}, "expected 3"),
        ({"threshold": {"value": 1.5, "metric": "f1"}}, r"\[0, 1\]"),
        ({"model": {"name": "meta", "version": 0}}, "positive integer"),
        ({"model": {"name": "meta", "version": "1"}}, "wrong type"),
        ({"calibration": {"method": "isotonic", "slope": 1, "intercept": 0}}, "calibration"),
    ],
)
def test_schema_violations_refused_even_when_signed(changes: dict, message: str) -> None:
    with pytest.raises(ArtifactError, match=message):
        load_artifact(signed_text(**changes), keys=[KEY])


def test_non_finite_numbers_cannot_be_written() -> None:
    doc = example_artifact()
    doc["linear"]["coef"] = [float("nan"), 1.0]
    with pytest.raises(ValueError):
        dumps_artifact(doc)


NEW_KEY, OLD_KEY = "n" * 32, "o" * 40


def test_keys_from_env_and_key_file(tmp_path: pytest.TempPathFactory) -> None:
    both = {SIGNING_KEY_ENV: f"{NEW_KEY}, {OLD_KEY}"}
    assert resolve_signing_keys(environ=both) == [NEW_KEY.encode(), OLD_KEY.encode()]
    assert resolve_signing_keys(environ={}) == []
    path = tmp_path / "keys"  # type: ignore[operator]
    path.write_text(f"{OLD_KEY}\n\n{NEW_KEY}\n")
    assert resolve_signing_keys(key_file=path, environ={}) == [OLD_KEY.encode(), NEW_KEY.encode()]
    with pytest.raises(ArtifactError, match="cannot read key file"):
        resolve_signing_keys(key_file=tmp_path / "missing")  # type: ignore[operator]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (f"{NEW_KEY},short-key", "signing key 2 in METASIGNAL_SIGNING_KEY is 9 bytes long"),
        ("x" * 31, "signing key 1 in METASIGNAL_SIGNING_KEY is 31 bytes long"),
        # The compose file's former fallback and the k8s Secret's former placeholder.
        ("insecure-local-compose-key", "signing key 1 in METASIGNAL_SIGNING_KEY is a placeholder"),
        ("REPLACE-ME-with-a-long-random-key", "is a placeholder"),
        ("replace-me-with-32-or-more-random-bytes-from-openssl", "is a placeholder"),
    ],
)
def test_short_and_placeholder_keys_are_refused_without_showing_them(
    value: str, problem: str
) -> None:
    with pytest.raises(ArtifactError) as refused:
        resolve_signing_keys(environ={SIGNING_KEY_ENV: value})
    message = str(refused.value)
    assert problem in message
    assert "at least 32 random bytes" in message and "\n" not in message
    assert all(part not in message for part in value.split(","))


def test_key_file_placeholder_is_refused(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "keys"  # type: ignore[operator]
    path.write_text(f"{NEW_KEY}\nREPLACE-ME-with-32-or-more-random-bytes\n")
    with pytest.raises(ArtifactError, match=f"signing key 2 in key file {path} is a placeholder"):
        resolve_signing_keys(key_file=path)


def test_compiled_model_matches_the_formula_and_imputes_missing_members() -> None:
    doc = example_artifact(("a", "b"))
    doc["preprocessing"].update(impute=[0.2, 0.7], mean=[0.1, -0.2], scale=[2.0, 0.5])
    doc["linear"] = {"coef": [0.8, -1.3], "intercept": 0.4}
    doc["calibration"] = {"method": "platt", "slope": 1.7, "intercept": -2.5}
    model = CompiledModel.from_artifact(doc)
    votes = np.array([[0.3, 0.9], [np.nan, 0.1], [0.0, 1.0]])
    filled = np.where(np.isnan(votes), [0.2, 0.7], votes)
    clipped = np.clip(filled, 1e-6, 1 - 1e-6)
    z = (np.log(clipped / (1 - clipped)) - [0.1, -0.2]) / [2.0, 0.5]
    expected = sigmoid(1.7 * (z @ [0.8, -1.3] + 0.4) - 2.5)
    np.testing.assert_allclose(model.predict_proba(votes), expected, rtol=0, atol=1e-12)
    assert np.isfinite(model.predict_proba(votes)).all()
