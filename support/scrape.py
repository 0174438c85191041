"""Reading a /metrics page as Prometheus does (prometheus_client's own text parser), sync or from an event loop."""

import urllib.request

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset], float]


def parse(text: str) -> Samples:
    """(sample name, its labels) -> value, for every sample on the page."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return parse(response.read().decode())


async def scrape_async(port: int) -> Samples:
    """From a test whose event loop also serves the page (a blocking read would wait for itself)."""
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as response:
        assert response.status == 200
        return parse(await response.text())


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 when the page has no such sample (a counter not yet incremented)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}
