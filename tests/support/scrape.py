"""Read one sample from a server's /metrics (Prometheus text format)."""

from typing import Any

from prometheus_client.parser import text_string_to_metric_families


async def metric(http: Any, name: str, **labels: str) -> float:
    """The value of sample ``name`` with ``labels``; 0 when the series does not exist yet."""
    r = await http.get("/metrics")
    assert r.status_code == 200, r.text
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


async def metric_names(http: Any) -> set[str]:
    r = await http.get("/metrics")
    return {family.name for family in text_string_to_metric_families(r.text)}
