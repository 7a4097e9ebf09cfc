"""Reading ``/metrics`` the way Prometheus does: the text format, parsed by prometheus-client."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample called ``name`` (``idsync_http_requests_total``, ``…_count``), by its labels."""
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    """The one sample ``name`` with exactly these labels (0 when absent: a counter never incremented)."""
    return samples(text, name).get(tuple(sorted(labels.items())), 0.0)


def total(text: str, name: str, where: Mapping[str, str] | None = None) -> float:
    """The sum of ``name`` over every sample whose labels include ``where``."""
    wanted = set((where or {}).items())
    return sum(v for labels, v in samples(text, name).items() if wanted <= set(labels))
