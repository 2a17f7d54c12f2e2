"""Reproducible synthetic investment committee: member probabilities plus rare 0/1 labels.

Used by the tests, the demo and the benchmarks as a stand-in for a real committee of base
models. Everything is vectorised numpy (plus the standard library); 1,000,000 events x 8
members take a fraction of a second.

Model
-----
For events ``t = 0 .. n-1`` and members ``j = 1 .. N``:

* latent signal ``z_t ~ N(0, 1)`` and label noise ``e_t ~ N(0, s_e^2)`` with
  ``s_e = LABEL_NOISE_SD``; the label noise caps what even a perfect committee can achieve;
* label ``y_t = 1  iff  z_t + e_t > sqrt(1 + s_e^2) * Phi^-1(1 - r_t)``, where ``r_t`` is the
  target base rate at ``t`` (``positive_rate``, stepped by ``rate_steps``); the threshold is
  the exact ``1 - r_t`` quantile of ``z_t + e_t``, so the realised rate is Binomial(n, r_t);
* member evidence ``x_tj = a_tj * z_t + sqrt(1 + a_j^2 - a_tj^2) * eta_tj`` with unit-variance
  noise ``eta_tj = sqrt(rho) * c_t + sqrt(1 - rho) * u_tj`` (``c_t`` a common factor shared by
  all members, ``u_tj`` idiosyncratic, ``rho = noise_correlation``). ``a_j`` is the member's
  loading and ``a_tj = a_j`` except for ``decaying_member``, whose loading falls linearly from
  ``a_j`` at ``decay_start`` to 0 at the last event. The square-root factor tops the noise up
  as the loading decays, so ``var(x_tj) = 1 + a_j^2`` throughout: the member fades into pure
  noise with an unchanged output spread instead of looking obviously broken;
* member output ``p_tj = sigmoid(T_j * k_j(x_tj) + b_j)`` where ``k_j`` is the calibrated logit
  the member would output if it knew its loading and the base rate ``positive_rate``:
  ``k_j(x) = 1.702 * (A_j * x / (1 + A_j^2) - q) / sqrt(1 + s_e^2 - A_j^2 / (1 + A_j^2))``
  with ``q = sqrt(1 + s_e^2) * Phi^-1(1 - positive_rate)``. This is the Gaussian posterior
  ``P(y = 1 | x)`` under the logistic approximation ``Phi(u) ~ sigmoid(1.702 u)``.
  ``A_j = max(a_j, MIN_APPARENT_SKILL)``: a weak member believes it has some signal (as an
  overfitted model does), so even a zero-skill member emits varying probabilities.
  Calibration is imperfect: ``T_j = exp(0.5 * sin(2.4 j + 1))`` in [0.61, 1.65] (``T > 1``
  overconfident, ``T < 1`` underconfident, deliberately unrelated to skill), ``b_j = bias``.
  Members are calibrated to ``positive_rate`` and are not told about later rate steps,
  which is exactly the prior shift a deployed committee suffers. Logits are clipped to
  +/-30 so that every probability is strictly inside (0, 1) in float64.

Loadings: a scalar ``skill`` is spread over the committee as
``a_j = skill * linspace(0.7, 1.3, N)[j]`` (``m1`` weakest, ``mN`` strongest; a single member
gets ``skill``). A sequence gives the loadings directly. With the defaults (8 members, 2 %
positives) a class-balanced logistic regression on the vote logits, trained on the first 70 %,
reaches a holdout F1 of about 0.47 against about 0.39 for the best single member.

Timestamps are ``start_ms + i * step_ms`` plus a uniform integer jitter in ``[0, step_ms)``,
so they are irregular but strictly increasing. Ids are ``evt-0000001`` onwards (1-based,
zero-padded to at least 7 digits).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist

import numpy as np

__all__ = [
    "LABEL_NOISE_SD",
    "MIN_APPARENT_SKILL",
    "Committee",
    "RateStep",
    "generate_committee",
]

LABEL_NOISE_SD = 0.3
"""Standard deviation of the label noise ``e_t`` relative to the unit-variance signal."""

MIN_APPARENT_SKILL = 0.3
"""Smallest loading a member believes it has when scaling its own output."""

_SKILL_SPREAD = (0.7, 1.3)
# Logistic approximation of the normal CDF: max error about 0.01 in probability.
_PROBIT_TO_LOGIT = 1.702
_LOGIT_CLIP = 30.0
_ID_PREFIX = "evt-"
_ID_MIN_DIGITS = 7
_RESERVED_COLUMNS = frozenset({"id", "ts", "label"})
_CSV_ROWS_PER_CHUNK = 20_000


@dataclass(frozen=True)
class RateStep:
    """A change of the target base rate part-way through the stream.

    Parameters
    ----------
    at
        Fraction of the stream in ``[0, 1)``; event ``i`` of ``n`` uses the new rate when
        ``i / n >= at``.
    positive_rate
        New target positive rate in ``(0, 1)``.

    Examples
    --------
    >>> RateStep(at=0.5, positive_rate=0.05)
    RateStep(at=0.5, positive_rate=0.05)
    """

    at: float
    positive_rate: float


@dataclass(frozen=True, eq=False)
class Committee:
    """Committee votes and labels for a stream of events, in time order.

    ``eq=False`` because element-wise array comparison has no single truth value.

    Attributes
    ----------
    ids
        Unique str event ids, dtype ``<U..``.
    time_ms
        int64 epoch milliseconds, strictly increasing.
    members
        Member names, one per column of ``votes``.
    votes
        float64 ``(n_events, n_members)`` probabilities, each strictly inside (0, 1).
    labels
        int8 0/1 outcomes.

    Examples
    --------
    >>> c = generate_committee(n_events=10, n_members=3, seed=7)
    >>> len(c), c.members, c.votes.shape
    (10, ('m1', 'm2', 'm3'), (10, 3))
    >>> len(c.slice(2, 5))
    3
    """

    ids: np.ndarray
    time_ms: np.ndarray
    members: tuple[str, ...]
    votes: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        n = self.ids.shape[0]
        if self.votes.ndim != 2 or self.votes.shape[1] != len(self.members):
            raise ValueError(
                f"votes must have shape (n_events, {len(self.members)}), got {self.votes.shape}"
            )
        shapes = {
            "ids": self.ids.shape,
            "time_ms": self.time_ms.shape,
            "labels": self.labels.shape,
            "votes rows": self.votes.shape[:1],
        }
        if any(shape != (n,) for shape in shapes.values()):
            raise ValueError(f"inconsistent lengths: {shapes}")

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def slice(self, start: int, stop: int) -> Committee:
        """Return events ``start:stop`` (Python slice semantics) as views, not copies.

        Examples
        --------
        >>> c = generate_committee(n_events=5, seed=0)
        >>> [str(i) for i in c.slice(-2, 5).ids]
        ['evt-0000004', 'evt-0000005']
        """
        s = slice(start, stop)
        return Committee(
            ids=self.ids[s],
            time_ms=self.time_ms[s],
            members=self.members,
            votes=self.votes[s],
            labels=self.labels[s],
        )

    @property
    def positive_rate(self) -> float:
        """Realised fraction of positive labels (NaN for an empty committee).

        Examples
        --------
        >>> c = generate_committee(n_events=100_000, positive_rate=0.1, seed=3)
        >>> abs(c.positive_rate - 0.1) < 0.005
        True
        """
        if len(self) == 0:
            return math.nan
        return float(np.count_nonzero(self.labels)) / len(self)

    def to_csv(self, path: str | Path, *, time_format: str = "ms") -> None:
        """Write ``id,ts,<members...>,label`` rows to ``path``.

        Parameters
        ----------
        path
            Destination file; overwritten.
        time_format
            ``"ms"`` writes integer epoch milliseconds, ``"iso"`` ISO-8601 UTC with
            millisecond precision (``2024-01-01T00:00:00.000Z``).

        Probabilities are written as ``%.17g``, which round-trips exactly: ``float(text)``
        gives back the identical float64.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> c = generate_committee(n_events=3, n_members=2, seed=1)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = pathlib.Path(d) / "c.csv"
        ...     c.to_csv(p, time_format="iso")
        ...     p.read_text().splitlines()[0]
        'id,ts,m1,m2,label'
        """
        if time_format == "ms":
            ts: list[object] = self.time_ms.tolist()
            ts_fmt = "%d"
        elif time_format == "iso":
            ts = np.datetime_as_string(
                self.time_ms.astype("datetime64[ms]"), unit="ms", timezone="UTC"
            ).tolist()
            ts_fmt = "%s"
        else:
            raise ValueError(f"time_format must be 'ms' or 'iso', got {time_format!r}")

        n_members = len(self.members)
        # One %-format per chunk keeps the per-value work in C; '%.17g' is the cheapest
        # formatting that round-trips every float64 exactly (shortest repr costs ~40 % more).
        row_fmt = "%s," + ts_fmt + "," + "%.17g," * n_members + "%d\n"
        width = n_members + 3
        ids = self.ids.tolist()
        labels = self.labels.tolist()
        with open(path, "w", encoding="utf-8", newline="") as fh:
            fh.write(",".join(["id", "ts", *self.members, "label"]) + "\n")
            for lo in range(0, len(self), _CSV_ROWS_PER_CHUNK):
                hi = min(lo + _CSV_ROWS_PER_CHUNK, len(self))
                flat_votes = self.votes[lo:hi].ravel().tolist()
                cells: list[object] = [None] * ((hi - lo) * width)
                cells[0::width] = ids[lo:hi]
                cells[1::width] = ts[lo:hi]
                for j in range(n_members):
                    cells[2 + j :: width] = flat_votes[j::n_members]
                cells[width - 1 :: width] = labels[lo:hi]
                fh.write((row_fmt * (hi - lo)) % tuple(cells))


def generate_committee(
    *,
    n_events: int,
    n_members: int = 8,
    positive_rate: float = 0.02,
    skill: float | Sequence[float] = 1.0,
    bias: float | Sequence[float] = 0.0,
    noise_correlation: float = 0.3,
    rate_steps: Sequence[RateStep] = (),
    decaying_member: int | None = None,
    decay_start: float = 0.5,
    label_shift: bool = False,
    start_ms: int = 1_704_067_200_000,
    step_ms: int = 60_000,
    member_names: Sequence[str] | None = None,
    id_prefix: str = _ID_PREFIX,
    seed: int = 0,
) -> Committee:
    """Generate a synthetic committee stream; see the module docstring for the model.

    Parameters
    ----------
    n_events, n_members
        Stream length and committee size (both >= 1).
    positive_rate
        Target base rate in (0, 1) at the start; members are calibrated to it.
    skill
        Scalar scale of the default loading spread, or one loading (>= 0) per member.
    bias
        Logit offset added to member outputs, scalar or one per member.
    noise_correlation
        Share ``rho`` in [0, 1] of each member's noise variance that is common to all.
    rate_steps
        Base-rate changes, ``at`` strictly increasing in [0, 1).
    decaying_member
        0-based member index whose skill decays to 0 from ``decay_start`` to the end.
    decay_start
        Fraction of the stream in [0, 1) where the decay begins.
    label_shift
        Make ``rate_steps`` a pure label shift: each event's class is drawn at the current
        rate and its latent signal from that class's distribution at ``positive_rate``, so
        ``p(votes | label)`` never changes and the votes' distribution moves with the class
        mix (what the label-free monitor detects). By default a step moves the label
        threshold instead: the votes keep their distribution and ``P(label | votes)``
        changes (only outcomes can show it).
    start_ms, step_ms
        First timestamp (epoch ms) and mean spacing (>= 1 ms).
    member_names
        Names instead of ``m1..mN``; unique, non-empty, CSV-safe, not id/ts/label.
    id_prefix
        Text before the event number in the ids (``evt-``); ``metasignal synth`` puts the
        start time and seed in it so that two generated files never share an id.
    seed
        Seed for ``numpy.random.default_rng``; same seed, same arrays.

    Examples
    --------
    >>> c = generate_committee(n_events=1000, seed=1)
    >>> len(c), c.votes.shape, str(c.ids[0])
    (1000, (1000, 8), 'evt-0000001')
    >>> bool(((c.votes > 0) & (c.votes < 1)).all()), bool((np.diff(c.time_ms) > 0).all())
    (True, True)
    """
    names = _validate(
        n_events=n_events,
        n_members=n_members,
        positive_rate=positive_rate,
        noise_correlation=noise_correlation,
        rate_steps=rate_steps,
        decaying_member=decaying_member,
        decay_start=decay_start,
        start_ms=start_ms,
        step_ms=step_ms,
        member_names=member_names,
    )
    if not id_prefix.isascii() or any(ch in id_prefix for ch in ',"\r\n'):
        raise ValueError(f"id_prefix {id_prefix!r} must be CSV-safe ASCII")
    skill_scale = _as_scalar_or_none(skill, "skill")
    if skill_scale is not None:
        loadings = skill_scale * _skill_spread(n_members)
    else:
        loadings = _per_member(skill, n_members, "skill")
    if np.any(loadings < 0):
        raise ValueError(f"skill must be >= 0, got {loadings.tolist()}")
    biases = _per_member(bias, n_members, "bias")

    rng = np.random.default_rng(seed)
    n, m = n_events, n_members
    rho = float(noise_correlation)
    label_sd = math.sqrt(1.0 + LABEL_NOISE_SD**2)

    rates = [float(positive_rate), *(float(s.positive_rate) for s in rate_steps)]
    step_at = np.array([float(s.at) for s in rate_steps])
    segment = np.searchsorted(step_at, np.arange(n) / n, side="right")
    if label_shift:
        z, labels = _class_conditional_signal(rng, np.array(rates)[segment], rates[0], label_sd)
    else:
        z = rng.standard_normal(n)
        label_noise = rng.standard_normal(n)
        label_noise *= LABEL_NOISE_SD
        # Per-event threshold: only len(rate_steps)+1 distinct quantiles, so compute them
        # exactly with the stdlib and index, instead of an approximate vectorised inverse CDF.
        steps = np.array([label_sd * NormalDist().inv_cdf(1.0 - r) for r in rates])
        labels = (z + label_noise > steps[segment]).astype(np.int8)
    quantile = label_sd * NormalDist().inv_cdf(1.0 - rates[0])
    common = rng.standard_normal(n)
    noise = rng.standard_normal((n, m))
    jitter = rng.integers(0, step_ms, size=n, dtype=np.int64)

    # Unit-variance member noise, built in place to keep the (n, m) temporaries down to one.
    noise *= math.sqrt(1.0 - rho)
    noise += math.sqrt(rho) * common[:, None]
    evidence = noise
    for j in range(m):
        if j == decaying_member:
            pos = np.arange(n) / max(n - 1, 1)
            a_t = loadings[j] * np.clip((1.0 - pos) / (1.0 - decay_start), 0.0, 1.0)
            # Top the noise up as the loading fades so var(evidence) stays 1 + a_j^2.
            evidence[:, j] *= np.sqrt(1.0 + loadings[j] ** 2 - a_t**2)
            evidence[:, j] += a_t * z
        else:
            evidence[:, j] += loadings[j] * z

    apparent = np.maximum(loadings, MIN_APPARENT_SKILL)
    cond_sd = np.sqrt(label_sd**2 - apparent**2 / (1.0 + apparent**2))
    temperature = _temperatures(m)
    slope = temperature * _PROBIT_TO_LOGIT * apparent / (1.0 + apparent**2) / cond_sd
    intercept = biases - temperature * _PROBIT_TO_LOGIT * quantile / cond_sd
    logits = evidence
    logits *= slope
    logits += intercept
    np.clip(logits, -_LOGIT_CLIP, _LOGIT_CLIP, out=logits)
    # sigmoid in place: 1 / (1 + exp(-l))
    np.negative(logits, out=logits)
    np.exp(logits, out=logits)
    logits += 1.0
    votes = np.reciprocal(logits, out=logits)

    time_ms = start_ms + np.arange(n, dtype=np.int64) * step_ms + jitter
    return Committee(
        ids=_event_ids(n, id_prefix),
        time_ms=time_ms,
        members=names,
        votes=votes,
        labels=labels,
    )


def _class_conditional_signal(
    rng: np.random.Generator, rates: np.ndarray, base_rate: float, label_sd: float
) -> tuple[np.ndarray, np.ndarray]:
    """Latent signal and labels of a label-shifted stream: classes at ``rates``, each event's
    ``z`` from its class's distribution at ``base_rate``.

    ``u = z + e ~ N(0, label_sd^2)`` is drawn from its upper ``base_rate`` tail for a positive
    and the rest for a negative (inverse CDF of a uniform on that part), then
    ``z | u ~ N(u / label_sd^2, 1 - 1 / label_sd^2)``.
    """
    from scipy.special import ndtri

    n = len(rates)
    labels = (rng.random(n) < rates).astype(np.int8)
    share = 1.0 - rng.random(n)  # in (0, 1]: no infinite quantile
    tail = np.where(labels == 1, 1.0 - base_rate * share, (1.0 - base_rate) * share)
    u = label_sd * ndtri(tail)
    z = u / label_sd**2 + math.sqrt(1.0 - 1.0 / label_sd**2) * rng.standard_normal(n)
    return z, labels


def _skill_spread(n_members: int) -> np.ndarray:
    if n_members == 1:
        return np.ones(1)
    return np.linspace(*_SKILL_SPREAD, n_members)


def _temperatures(n_members: int) -> np.ndarray:
    # A fixed, skill-independent pseudo-random pattern: benchmark difficulty must not vary
    # with the seed, and over/under-confidence should not line up with skill.
    j = np.arange(1, n_members + 1)
    return np.exp(0.5 * np.sin(2.4 * j + 1.0))


def _event_ids(n: int, prefix: str = _ID_PREFIX) -> np.ndarray:
    # Build the digits as bytes and reinterpret them as fixed-width strings; np.char.mod
    # would format one Python string per event and dominates the runtime at 1M events.
    digits = max(_ID_MIN_DIGITS, len(str(n)))
    numbers = np.arange(1, n + 1, dtype=np.int64)
    powers = 10 ** np.arange(digits - 1, -1, -1, dtype=np.int64)
    head = prefix.encode("ascii")
    buf = np.empty((n, len(head) + digits), dtype=np.uint8)
    buf[:, : len(head)] = np.frombuffer(head, dtype=np.uint8)
    buf[:, len(head) :] = (numbers[:, None] // powers) % 10 + ord("0")
    width = buf.shape[1]
    return buf.view(f"S{width}").ravel().astype(f"<U{width}")


def _as_scalar_or_none(value: float | Sequence[float], name: str) -> float | None:
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        if not math.isfinite(float(value)):
            raise ValueError(f"{name} must be finite, got {value!r}")
        return float(value)
    return None


def _per_member(value: float | Sequence[float], n_members: int, name: str) -> np.ndarray:
    scalar = _as_scalar_or_none(value, name)
    if scalar is not None:
        return np.full(n_members, scalar)
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != (n_members,):
        raise ValueError(f"{name} must be a scalar or have n_members={n_members} entries")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr.tolist()}")
    return arr


def _check_rate(rate: float, what: str) -> None:
    if not 0.0 < float(rate) < 1.0:
        raise ValueError(f"{what} must be in the open interval (0, 1), got {rate!r}")


def _validate(
    *,
    n_events: int,
    n_members: int,
    positive_rate: float,
    noise_correlation: float,
    rate_steps: Sequence[RateStep],
    decaying_member: int | None,
    decay_start: float,
    start_ms: int,
    step_ms: int,
    member_names: Sequence[str] | None,
) -> tuple[str, ...]:
    if n_events < 1:
        raise ValueError(f"n_events must be >= 1, got {n_events}")
    if n_members < 1:
        raise ValueError(f"n_members must be >= 1, got {n_members}")
    _check_rate(positive_rate, "positive_rate")
    if not 0.0 <= float(noise_correlation) <= 1.0:
        raise ValueError(f"noise_correlation must be in [0, 1], got {noise_correlation!r}")
    previous = -math.inf
    for i, step in enumerate(rate_steps):
        if not 0.0 <= float(step.at) < 1.0:
            raise ValueError(f"rate_steps[{i}].at must be in [0, 1), got {step.at!r}")
        if not float(step.at) > previous:
            raise ValueError(f"rate_steps must have strictly increasing 'at', got {rate_steps!r}")
        previous = float(step.at)
        _check_rate(step.positive_rate, f"rate_steps[{i}].positive_rate")
    if decaying_member is not None and not 0 <= decaying_member < n_members:
        raise ValueError(f"decaying_member must be in [0, {n_members}), got {decaying_member}")
    if not 0.0 <= float(decay_start) < 1.0:
        raise ValueError(f"decay_start must be in [0, 1), got {decay_start!r}")
    if step_ms < 1:
        raise ValueError(f"step_ms must be >= 1, got {step_ms}")
    int64 = np.iinfo(np.int64)
    if not int64.min <= start_ms <= start_ms + n_events * step_ms <= int64.max:
        raise ValueError("start_ms + n_events * step_ms overflows int64 milliseconds")

    if member_names is None:
        return tuple(f"m{j}" for j in range(1, n_members + 1))
    names = tuple(member_names)
    if len(names) != n_members:
        raise ValueError(f"member_names has {len(names)} names, n_members is {n_members}")
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"member names must be non-empty strings, got {name!r}")
        if any(ch in name for ch in ',"\r\n') or name in _RESERVED_COLUMNS:
            raise ValueError(f"member name {name!r} is reserved or not CSV-safe")
    if len(set(names)) != len(names):
        dupes = sorted({x for x in names if names.count(x) > 1})
        raise ValueError(f"duplicate member names: {dupes}")
    return names
