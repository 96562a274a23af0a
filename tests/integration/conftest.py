"""Fixtures for the feature-store tests: a Feast root on SQLite, and a throwaway redis-server.

Here rather than in :mod:`tests.integration.feature_store_cases` because two test files use
each of them, and pytest finds a conftest's fixtures without an import (an imported fixture
reads as an unused import that the test's argument redefines). The feature-store resource is
imported inside its fixture so that the other integration tests do not load Feast for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.redis_server import INSTALL_HINT, RedisServerNotInstalled, redis_server

if TYPE_CHECKING:
    from resources.feature_store import FeatureStoreResource


@pytest.fixture
def sqlite_store(tmp_path: Path) -> FeatureStoreResource:
    from resources.feature_store import FeatureStoreResource

    return FeatureStoreResource(root=str(tmp_path / "feast"))


@pytest.fixture(scope="module")
def redis_connection() -> Iterator[str]:
    """``host:port`` of a throwaway redis-server that lives as long as the test module."""
    try:
        with redis_server() as connection:
            yield connection
    except RedisServerNotInstalled:
        pytest.skip(INSTALL_HINT)
