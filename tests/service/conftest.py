"""Fixtures of the service tests: a Redis namespace per test, settings files, worker processes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis as redis_lib


@pytest.fixture
def namespace() -> str:
    """A key prefix of its own, so parallel sessions on one Redis never collide."""
    return f"erpsync-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def redis_client(redis_url: str, namespace: str) -> Iterator[Any]:
    client = redis_lib.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        for key in client.scan_iter(f"{namespace}:*", count=1000):
            client.delete(key)
        client.close()
