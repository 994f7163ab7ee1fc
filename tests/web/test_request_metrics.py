"""The web's request metrics: what one counted request adds to the counter and histogram."""

from __future__ import annotations

from studychat.web.request_metrics import LATENCY, REQUESTS, count_request


def sample_value(metric, name: str, **labels: str) -> float:
    """The value of one sample as a scrape reads it (0 when the label set is new)."""
    samples = (sample for family in metric.collect() for sample in family.samples)
    found = [sample.value for sample in samples if sample.name == name and sample.labels == labels]
    return found[0] if found else 0.0


def counted(method: str, route: str, status: str) -> float:
    labels = {"method": method, "route": route, "status": status}
    return sample_value(REQUESTS, "http_requests_total", **labels)


def timed(method: str, route: str) -> float:
    labels = {"method": method, "route": route}
    return sample_value(LATENCY, "http_request_duration_seconds_count", **labels)


def test_each_request_adds_one_to_its_label_set_and_its_time_to_the_histogram():
    before = counted("POST", "/test-counted", "200"), timed("POST", "/test-counted")
    count_request("POST", "/test-counted", "200", 0.01)
    count_request("POST", "/test-counted", "200", 0.02)
    assert counted("POST", "/test-counted", "200") == before[0] + 2
    assert timed("POST", "/test-counted") == before[1] + 2


def test_label_sets_are_counted_apart():
    before = counted("POST", "/test-apart", "429")
    count_request("POST", "/test-apart", "200", 0.01)
    assert counted("POST", "/test-apart", "429") == before


def test_a_request_without_its_time_is_counted_but_not_timed():
    before = counted("GET", "/test-untimed", "200"), timed("GET", "/test-untimed")
    count_request("GET", "/test-untimed", "200", None)
    assert counted("GET", "/test-untimed", "200") == before[0] + 1
    assert timed("GET", "/test-untimed") == before[1]
