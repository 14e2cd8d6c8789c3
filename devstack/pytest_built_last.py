"""pytest plugin for `make test` (-p devstack.pytest_built_last): run the
tests that need the built artifacts last (the benchmark smoke test measures
their init too), so the build `make test` started in the background
(python -m devstack.built prefetch) overlaps every other test instead of
being waited for by the first test that needs it."""

from __future__ import annotations

LAST = ("test_bench_smoke.py", "test_built_artifacts.py")


def pytest_collection_modifyitems(session, config, items):
    # Stable sort: the order within each group stays as collected.
    items.sort(key=lambda item: LAST.index(item.path.name) + 1 if item.path.name in LAST else 0)
