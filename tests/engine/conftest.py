"""Fixtures for the apply tests: a playground per test, stopped afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sync.playground import Playground, start_playground

MakePlayground = Callable[..., Playground]


@pytest.fixture
def playground(tmp_path: Path) -> Iterator[MakePlayground]:
    """``make(sub, kasa_batch=…, config=…, **start_playground kwargs)``; all stopped at teardown."""
    started: list[Playground] = []

    def make(sub: str = "pg", *, kasa_batch: int | None = None, **kw: Any) -> Playground:
        pg = start_playground(tmp_path / sub, **kw)
        started.append(pg)
        if kasa_batch is not None:
            cfg = yaml.safe_load(pg.config_path.read_text(encoding="utf-8"))
            cfg["tenants"][pg.tenant]["smartkasa"]["batch_size"] = kasa_batch
            pg.config_path.write_text(
                yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), encoding="utf-8"
            )
        return pg

    try:
        yield make
    finally:
        for pg in started:
            pg.stop()
