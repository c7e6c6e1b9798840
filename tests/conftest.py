"""Settings every test shares."""

from __future__ import annotations

import os

import pytest

from ctrlsparse.plumbing.paths import CACHE_ENV


@pytest.fixture(autouse=True, scope="session")
def image_check_cache(tmp_path_factory):
    """Image-folder checks cache their verdicts here, never in the user's ~/.cache (the CLI processes that tests
    start inherit it)."""
    previous = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = previous
