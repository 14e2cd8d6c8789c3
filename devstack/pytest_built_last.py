"""pytest plugin for `make test` (-p devstack.pytest_built_last): run
tests/test_built_artifacts.py last, so the build `make test` started in the
background (python -m devstack.built prefetch) overlaps every other test
instead of being waited for by the first test that needs it."""

from __future__ import annotations

LAST = "test_built_artifacts.py"


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: item.path.name == LAST)  # stable: the order within each group stays
