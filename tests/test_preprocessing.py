from __future__ import annotations

import warnings

import numpy as np
import pytest

from metasignal.trainer.preprocessing import LogitStandardizer
from metasignal.trainer.synthetic import generate_committee


@pytest.mark.parametrize("missing", [False, True])
@pytest.mark.parametrize("kind", ["probability", "raw"])
def test_the_fast_paths_give_bit_identical_features(missing: bool, kind: str) -> None:
    """fit_transform (logits taken once) and the NaN-free median equal the reference exactly."""
    X = generate_committee(n_events=5001, n_members=4, seed=3).votes.copy()
    if missing:
        X[::7, 1] = np.nan
        X[:, 3] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the all-NaN column's median
        reference = LogitStandardizer(kind=kind).fit(X)
        fast = LogitStandardizer(kind=kind).fit_transform(X)
        median = np.nanmedian(X, axis=0)
    default = 0.5 if kind == "probability" else 0.0
    np.testing.assert_array_equal(reference.impute_, np.where(np.isnan(median), default, median))
    np.testing.assert_array_equal(fast, reference.transform(X))
