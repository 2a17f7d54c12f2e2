"""The shared ranking statistics agree with scikit-learn's, ties included."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.metrics import log_loss as sk_log_loss

from metasignal.stream.quality import average_precision, log_loss, roc_auc

samples = st.lists(
    st.tuples(st.integers(0, 1), st.sampled_from([0.05, 0.1, 0.3, 0.5, 0.7, 0.9, 0.95])),
    min_size=2,
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(samples)
def test_same_values_as_scikit_learn(pairs: list[tuple[int, float]]) -> None:
    y = np.array([label for label, _ in pairs])
    s = np.array([score for _, score in pairs])  # few distinct values: many ties
    if 0 < y.sum() < len(y):
        assert math.isclose(average_precision(y, s), average_precision_score(y, s), abs_tol=1e-12)
        assert math.isclose(roc_auc(y, s), roc_auc_score(y, s), abs_tol=1e-12)
        assert math.isclose(log_loss(y, s), sk_log_loss(y, s, labels=[0, 1]), rel_tol=1e-9)


def test_undefined_without_both_classes() -> None:
    assert math.isnan(average_precision(np.zeros(3), np.array([0.1, 0.2, 0.3])))
    assert math.isnan(roc_auc(np.ones(3), np.array([0.1, 0.2, 0.3])))
    assert math.isnan(log_loss(np.array([]), np.array([])))
