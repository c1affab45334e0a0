"""Prometheus metrics for the server: requests, tokens by origin, big calls, rollbacks,
acceptance and latency. One registry per app, so several apps (tests) never share counters."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REASONS = ("small", "copy", "correction", "fallback", "big")
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)


class Metrics:
    def __init__(self):
        self.registry = r = CollectorRegistry()
        self.requests = Counter("biglittle_requests_total", "HTTP requests by endpoint and status code",
                                ["endpoint", "status"], registry=r)
        self.tokens = Counter("biglittle_tokens_total", "Generated tokens by who wrote them (small, copy, big)",
                              ["origin"], registry=r)
        self.reasons = Counter("biglittle_token_reasons_total",
                               "Generated tokens by why they are there: small (accepted draft), copy (accepted "
                               "prompt-lookup copy), correction "
                               "(big replaced a rejected draft), fallback (big took over from an unsure small "
                               "model), big (any other big token)", ["reason"], registry=r)
        self.big_calls = Counter("biglittle_big_calls_total", "Big-model forward passes", registry=r)
        self.small_calls = Counter("biglittle_small_calls_total", "Small-model forward passes", registry=r)
        self.rollbacks = Counter("biglittle_rollbacks_total", "Rounds in which the big model rejected drafts",
                                 registry=r)
        self.fallbacks = Counter("biglittle_fallbacks_total", "Rounds the small model handed over (BiLD)", registry=r)
        self.drafted = Counter("biglittle_drafted_tokens_total", "Tokens drafted by the small model", registry=r)
        self.accepted = Counter("biglittle_accepted_tokens_total", "Drafted tokens the big model kept", registry=r)
        self.acceptance = Gauge("biglittle_acceptance_rate", "Accepted / drafted over all requests so far",
                                registry=r)
        self.latency = Histogram("biglittle_request_latency_seconds", "Time from request to last token",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.first_token = Histogram("biglittle_time_to_first_token_seconds", "Time from request to first text",
                                     buckets=LATENCY_BUCKETS, registry=r)
        self.queue = Gauge("biglittle_queue_depth", "Requests admitted and not finished (running + waiting)",
                           registry=r)

    def record_generation(self, stats, reasons=()) -> None:
        self.tokens.labels("small").inc(stats.small_tokens)
        self.tokens.labels("copy").inc(stats.copied_tokens)
        self.tokens.labels("big").inc(stats.big_tokens)
        for reason in REASONS:
            self.reasons.labels(reason).inc(reasons.count(reason) if reasons else 0)
        self.big_calls.inc(stats.big_calls)
        self.small_calls.inc(stats.small_calls)
        self.rollbacks.inc(stats.rollbacks)
        self.fallbacks.inc(stats.fallbacks)
        self.drafted.inc(stats.drafted)
        self.accepted.inc(stats.accepted)
        drafted = self.drafted._value.get()
        if drafted:
            self.acceptance.set(self.accepted._value.get() / drafted)

    def render(self) -> bytes:
        return generate_latest(self.registry)
