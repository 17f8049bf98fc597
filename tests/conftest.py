"""pytest configuration: the tests under tests/workflow (whole-workflow runs, minutes) are marked
``slow`` (``make test-fast`` leaves them out; ``make test`` runs everything); shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import chest_phantom

WORKFLOW_TESTS = Path(__file__).parent / "workflow"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if WORKFLOW_TESTS in Path(item.path).parents:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def phantom():
    return chest_phantom()
