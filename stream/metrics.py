"""Prometheus metrics of the scorer and the HTTP endpoint that serves them.

Each service owns a :class:`~prometheus_client.CollectorRegistry`, so several
scorers can live in one process (tests, the demo) without clashing. The same
port serves ``/metrics``, ``/healthz`` (the loop is alive) and ``/readyz`` (a
model is loaded and votes are being consumed).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)


class BatchHistogram(Collector):
    """A Prometheus histogram fed a whole batch of observations at once.

    ``Histogram.observe`` walks the buckets in Python under a lock, about a
    microsecond per value: per vote that was a tenth of the scorer's own CPU.
    Here a batch costs one ``searchsorted``; the exposition is the same
    ``_bucket``/``_count``/``_sum`` series a ``Histogram`` of that name writes.

    Examples
    --------
    >>> registry = CollectorRegistry()
    >>> latency = BatchHistogram("demo_seconds", "Demo", buckets=(0.1, 1.0), registry=registry)
    >>> latency.observe_many(np.array([0.05, 0.1, 0.5, 3.0]))
    >>> registry.get_sample_value("demo_seconds_bucket", {"le": "0.1"})
    2.0
    >>> [registry.get_sample_value(f"demo_seconds_{s}") for s in ("count", "sum")]
    [4.0, 3.65]
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        *,
        buckets: tuple[float, ...],
        registry: CollectorRegistry,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self._bounds = np.asarray(buckets, dtype=np.float64)
        self._counts = np.zeros(len(buckets) + 1, dtype=np.int64)  # the last one is +Inf
        self._sum = 0.0
        self._lock = threading.Lock()  # the HTTP thread collects while the loop observes
        registry.register(self)

    def observe_many(self, values: np.ndarray) -> None:
        # Bucket i counts values <= bounds[i], as Histogram.observe does.
        index = np.searchsorted(self._bounds, values, side="left")
        counts = np.bincount(index, minlength=len(self._counts))
        total = float(np.sum(values))
        with self._lock:
            self._counts += counts
            self._sum += total

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            cumulative = np.cumsum(self._counts)
            total = self._sum
        labels = [floatToGoString(b) for b in self._bounds] + ["+Inf"]
        buckets = [(le, float(c)) for le, c in zip(labels, cumulative, strict=True)]
        yield HistogramMetricFamily(self.name, self.documentation, buckets=buckets, sum_value=total)


class OutageGauges:
    """Whether the broker answers, why a service is not ready, producer re-creations.

    The scorer and the trainer each declare their own three series and hand them here.
    """

    def __init__(self, *, reachable: Gauge, reason: Gauge, recreations: Counter) -> None:
        self.reachable = reachable
        self.reachable.set(1)
        self.reason = reason
        self.recreations = recreations

    def probe(self, reachable: Callable[[], bool]) -> None:
        """Read ``metasignal_broker_reachable`` live from ``reachable`` at each scrape (the
        loop may be blocked waiting for the broker when Prometheus asks)."""
        self.reachable.set_function(lambda: 1.0 if reachable() else 0.0)

    def set(self, reason: str | None) -> None:
        """Show ``reason`` (``None``: reachable and ready again)."""
        self.reason.clear()
        if reason is not None:
            self.reason.labels(reason=reason).set(1)


class ScorerMetrics:
    """Every series the scorer exports (names follow Prometheus conventions)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.votes = Counter("metasignal_votes_consumed", "Vote messages consumed", registry=r)
        self.signals = Counter(
            "metasignal_signals", "Signals produced, by decision", ["decision"], registry=r
        )
        self.dlq = Counter(
            "metasignal_dlq_messages",
            "Messages sent to the dead-letter topic",
            ["reason"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "metasignal_batch_scoring_seconds",
            "Decode + score + encode time per batch",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.latency = BatchHistogram(
            "metasignal_vote_to_signal_latency_seconds",
            (
                "From the vote's broker timestamp to the commit that made its signal durable "
                "(exactly-once: visible; at-least-once the signal is sent at once and this "
                "bounds its acknowledgement, see --commit-interval-s)"
            ),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model_info = Gauge(
            "metasignal_model_info",
            "The model being served (value 1)",
            ["name", "version", "strategy"],
            registry=r,
        )
        self.model_version = Gauge(
            "metasignal_model_version", "Version of the model being served", registry=r
        )
        self.threshold = Gauge(
            "metasignal_model_threshold", "Decision threshold of the served model", registry=r
        )
        self.model_created = Gauge(
            "metasignal_model_created_timestamp_seconds",
            "Creation time of the served model (model age = time() - this)",
            registry=r,
        )
        self.model_age = Gauge(
            "metasignal_model_age_seconds", "Seconds since the served model was created", registry=r
        )
        self.swaps = Counter("metasignal_model_swaps", "Models hot-swapped in", registry=r)
        self.refused = Counter(
            "metasignal_models_refused", "Artifacts refused, by reason", ["reason"], registry=r
        )
        self.predicted_rate = Gauge(
            "metasignal_predicted_positive_rate",
            "Share of trade decisions over the recent window of votes",
            registry=r,
        )
        self.lag = Gauge(
            "metasignal_consumer_lag",
            "Messages behind the end of each assigned partition",
            ["topic", "partition"],
            registry=r,
        )
        self.rebalances = Counter(
            "metasignal_rebalances", "Consumer-group rebalances seen", ["kind"], registry=r
        )
        self.ready = Gauge("metasignal_ready", "1 when a model is loaded and serving", registry=r)
        self.outage = OutageGauges(
            reachable=Gauge(
                "metasignal_broker_reachable",
                "1 while the broker answers; 0 during an outage or a producer re-creation",
                registry=r,
            ),
            reason=Gauge(
                "metasignal_not_ready_reason",
                "1 for why the scorer is not ready (broker_unreachable, producer_recreating)",
                ["reason"],
                registry=r,
            ),
            recreations=Counter(
                "metasignal_producer_recreations",
                "Producers re-created after a fenced or timed-out transaction",
                registry=r,
            ),
        )
        self.last_batch = Gauge(
            "metasignal_last_batch_timestamp_seconds",
            "When the scorer loop last completed an iteration",
            registry=r,
        )
        self.outcomes_joined = Counter(
            "metasignal_outcomes_joined", "Outcomes joined to their vote", registry=r
        )
        self.outcomes_unmatched = Counter(
            "metasignal_outcomes_unmatched",
            "Outcomes with no remembered vote (never seen, evicted or late)",
            ["reason"],
            registry=r,
        )
        self.join_entries = Gauge(
            "metasignal_join_cache_entries", "Votes waiting for their outcome", registry=r
        )
        self.join_bytes = Gauge(
            "metasignal_join_cache_bytes",
            "Memory held by the join cache (columns and event ids), bounded by its max bytes",
            registry=r,
        )
        self.join_evictions = Counter(
            "metasignal_join_cache_evictions",
            "Votes dropped from the join cache, by reason (size, ttl, bytes)",
            ["reason"],
            registry=r,
        )
        self.realized_rate = Gauge(
            "metasignal_realized_positive_rate",
            "Share of trades among recent joined outcomes",
            registry=r,
        )
        self.rolling_f1 = Gauge("metasignal_rolling_f1", "Rolling F1 of signals", registry=r)
        self.rolling_precision = Gauge(
            "metasignal_rolling_precision", "Rolling precision of signals", registry=r
        )
        self.rolling_recall = Gauge(
            "metasignal_rolling_recall", "Rolling recall of signals", registry=r
        )
        self.rolling_pr_auc = Gauge(
            "metasignal_rolling_pr_auc", "Rolling PR-AUC of scores (ranking quality)", registry=r
        )
        self.member_log_loss = Gauge(
            "metasignal_member_log_loss",
            "Rolling log-loss of each committee member's votes",
            ["member"],
            registry=r,
        )
        self.drift_events = Counter(
            "metasignal_drift_events",
            "Re-tune/retrain/label-shift requests sent to the trainer, by kind and evidence "
            "(source: outcomes or label_free)",
            ["kind", "source"],
            registry=r,
        )
        # Label-free estimates from the scores of the recent votes (no outcome needed).
        self.estimated_rate = Gauge(
            "metasignal_estimated_positive_rate",
            "Label-free positive rate of the recent votes (prior MLE from calibrated scores)",
            registry=r,
        )
        self.expected_precision = Gauge(
            "metasignal_expected_precision",
            "Label-free expected precision at the threshold (prior-corrected scores)",
            registry=r,
        )
        self.expected_recall = Gauge(
            "metasignal_expected_recall",
            "Label-free expected recall at the threshold (prior-corrected scores)",
            registry=r,
        )
        self.expected_f1 = Gauge(
            "metasignal_expected_f1",
            "Label-free expected F1 at the threshold (prior-corrected scores)",
            registry=r,
        )
        self.label_shift_statistic = Gauge(
            "metasignal_label_shift_statistic_ratio",
            "Label-shift CUSUM statistic over its decision interval, by side (alarm at 1)",
            ["side"],
            registry=r,
        )
        self.stale = Counter(
            "metasignal_stale_votes",
            "Votes older than --max-vote-age when scored: no-trade signals marked stale",
            registry=r,
        )
        # The shadow slot (metasignal.stream.shadow): a challenger, or a promoted champion's
        # predecessor during its rollback watch, scored beside the champion.
        self.shadow_info = Gauge(
            "metasignal_shadow_info",
            "The model in the shadow slot (value 1), by version and role (challenger, "
            "predecessor); no series when the slot is empty",
            ["version", "role"],
            registry=r,
        )
        self.live_f1 = Gauge(
            "metasignal_live_f1",
            "F1 of champion and shadow on the joined outcomes of their current comparison, "
            "by role (champion, shadow)",
            ["role"],
            registry=r,
        )
        self.live_pnl = Gauge(
            "metasignal_live_pnl",
            "PnL of champion and shadow over their current comparison, by role, in average "
            "losses per unit of position (a win pays the artifact's payoff ratio); NaN without "
            "a payoff ratio",
            ["role"],
            registry=r,
        )
        self.shadow_outcomes = Counter(
            "metasignal_shadow_outcomes",
            "Joined outcomes fed to the champion/shadow comparison",
            registry=r,
        )
        self.shadow_evidence = Counter(
            "metasignal_shadow_evidence_published",
            "Per-partition paired counts of the champion/shadow pair published on the evidence "
            "topic (one record per changed partition per commit; the trainer sums them)",
            registry=r,
        )
        self.shadow_evidence_refused = Counter(
            "metasignal_shadow_evidence_refused",
            "Records on the evidence topic that are not valid evidence, by reason",
            ["reason"],
            registry=r,
        )
        for role in ("champion", "shadow"):
            self.live_f1.labels(role=role).set(math.nan)
            self.live_pnl.labels(role=role).set(math.nan)
        self.transaction_aborts = Counter(
            "metasignal_transaction_aborts", "Batches rolled back (exactly-once mode)", registry=r
        )
        # Undefined until their window holds something: NaN, never a 0.0 that reads as a
        # collapse (Prometheus exports NaN; rules comparing it are simply false).
        for gauge in (self.predicted_rate, *self.rolling_gauges):
            gauge.set(math.nan)

    @property
    def rolling_gauges(self) -> tuple[Gauge, ...]:
        """The outcome-window gauges, reset to NaN when their window empties (a new model)."""
        return (
            self.realized_rate,
            self.rolling_f1,
            self.rolling_precision,
            self.rolling_recall,
            self.rolling_pr_auc,
        )


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on one port, in a daemon thread.

    Parameters
    ----------
    port
        TCP port on ``host``; 0 picks a free one (see :attr:`port`).
    is_alive, is_ready
        Probes evaluated on every request.
    """

    def __init__(
        self,
        *,
        registry: CollectorRegistry,
        port: int,
        is_alive: Callable[[], bool],
        is_ready: Callable[[], bool],
        host: str = "0.0.0.0",
    ) -> None:
        handler = _handler_class(registry, is_alive, is_ready)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics-http", daemon=True
        )

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler_class(
    registry: CollectorRegistry, is_alive: Callable[[], bool], is_ready: Callable[[], bool]
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok = is_alive()
                self._reply(200 if ok else 503, b"ok\n" if ok else b"stalled\n")
            elif path == "/readyz":
                ok = is_ready()
                self._reply(200 if ok else 503, b"ready\n" if ok else b"not ready\n")
            else:
                self._reply(404, b"not found\n")

        def _reply(self, code: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Scrapes every few seconds would drown the service log."""

    return Handler


class Heartbeat:
    """Liveness: the loop must report within ``max_silence_s`` to count as alive."""

    def __init__(self, max_silence_s: float = 60.0) -> None:
        self.max_silence_s = max_silence_s
        self._last = time.monotonic()

    def beat(self) -> None:
        self._last = time.monotonic()

    def alive(self) -> bool:
        return time.monotonic() - self._last < self.max_silence_s
