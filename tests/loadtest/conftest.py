"""Guard: nothing in the pytest process may import Locust (it monkey-patches everything)."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _no_locust_in_this_process() -> Iterator[None]:
    yield
    assert "locust" not in sys.modules, "a test imported locust into the pytest process"
