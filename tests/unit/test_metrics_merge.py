"""Merging several workers' expositions (router/observe/merge.py): counters and histograms
summed, gauges one series per worker, the result a valid exposition Prometheus parses."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from router.observe.merge import merge_expositions


def _worker(requests: float, depth: float) -> bytes:
    return f"""# HELP cascade_requests_total Requests
# TYPE cascade_requests_total counter
cascade_requests_total{{route="auto",status="ok"}} {requests}
cascade_requests_created{{route="auto",status="ok"}} 1.7e+09
# HELP cascade_request_seconds Latency
# TYPE cascade_request_seconds histogram
cascade_request_seconds_bucket{{le="0.1"}} {requests}
cascade_request_seconds_bucket{{le="+Inf"}} {requests}
cascade_request_seconds_count {requests}
cascade_request_seconds_sum 0.5
# HELP cascade_tier_queue_depth Queue
# TYPE cascade_tier_queue_depth gauge
cascade_tier_queue_depth{{tier="small"}} {depth}
""".encode()


def _samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def test_counters_and_histograms_are_summed_and_gauges_kept_per_worker() -> None:
    merged = _samples(merge_expositions([("101", _worker(3, 1)), ("102", _worker(4, 5))]))
    assert merged[("cascade_requests_total", (("route", "auto"), ("status", "ok")))] == 7
    assert merged[("cascade_request_seconds_bucket", (("le", "+Inf"),))] == 7
    assert merged[("cascade_request_seconds_sum", ())] == 1.0
    assert merged[("cascade_tier_queue_depth", (("tier", "small"), ("worker", "101")))] == 1
    assert merged[("cascade_tier_queue_depth", (("tier", "small"), ("worker", "102")))] == 5
    assert not any(name.endswith("_created") for name, _ in merged)


def test_one_worker_alone_is_its_own_exposition() -> None:
    alone = _samples(merge_expositions([("101", _worker(3, 2))]))
    assert alone[("cascade_requests_total", (("route", "auto"), ("status", "ok")))] == 3


def test_label_values_are_escaped_again() -> None:
    text = b'# TYPE g gauge\ng{path="a\\"b\\\\c"} 1.0\n'
    merged = _samples(merge_expositions([("1", text), ("2", text)]))
    assert merged[("g", (("path", 'a"b\\c'), ("worker", "2")))] == 1
