"""The event loop's lag: measured always, logged when a step held the loop too long."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from prometheus_client import CollectorRegistry

from router.observe.loop_lag import LoopLag


class _Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.lines.append((event, fields))


async def test_a_held_loop_is_measured_and_logged() -> None:
    registry, log = CollectorRegistry(), _Log()
    lag = LoopLag(registry, log, warn_s=0.1)  # type: ignore[arg-type]
    task = asyncio.create_task(lag.run(interval=0.01))
    await asyncio.sleep(0.05)
    time.sleep(0.3)  # one step holds the loop  # noqa: ASYNC251 - the point of the test
    await asyncio.sleep(0.05)
    task.cancel()
    samples = registry.get_sample_value("cascade_event_loop_lag_seconds_count")
    worst = registry.get_sample_value("cascade_event_loop_lag_seconds_bucket", {"le": "0.25"})
    assert samples is not None and worst is not None and samples > worst  # one above 0.25 s
    assert {event for event, _ in log.lines} == {"event_loop_held"}
    assert max(fields["lag_ms"] for _, fields in log.lines) >= 250
