"""Rich progress bars for an apply: one bar per platform entity, with rate and ETA."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from sync.core.plan import Plan


@contextmanager
def progress_bars(
    enabled: bool, console: Console
) -> Iterator[tuple[Callable[[Plan], None], Callable[[str, str, int], None]]]:
    """Rich progress bars per entity (items, rate, ETA); no-ops when ``enabled`` is False."""
    if not enabled:
        yield (lambda plan: None), (lambda platform, entity, n: None)
        return
    bars = Progress(
        TextColumn("[bold]{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>8}"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    tasks: dict[tuple[str, str], Any] = {}
    started: dict[tuple[str, str], float] = {}
    lock = threading.Lock()

    def on_plan(plan: Plan) -> None:
        totals: Counter[tuple[str, str]] = Counter()
        for a in plan.actions:
            totals[(a.platform, a.entity)] += 1
        for key, total in totals.items():
            tasks[key] = bars.add_task(f"{key[0]}/{key[1]}", total=total, rate="")

    def advance(platform: str, entity: str, n: int) -> None:
        with lock:
            key = (platform, entity)
            if key not in tasks:
                tasks[key] = bars.add_task(f"{platform}/{entity}", total=None, rate="")
            started.setdefault(key, time.monotonic())
            task = tasks[key]
            done = bars.tasks[task].completed + n
            elapsed = max(time.monotonic() - started[key], 1e-6)
            bars.update(task, advance=n, rate=f"{done / elapsed:,.0f}/s")

    with bars:
        yield on_plan, advance
