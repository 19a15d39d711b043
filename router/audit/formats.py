"""How the table and HTML reports print a figure: one rule per kind, so every money cell
rounds the same way (CSV and JSON keep the numbers as they are)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

Kind = Literal["count", "money", "share", "pct", "ms", "quality", "text"]


def money(value: float | None) -> str:
    """Dollars to cents; under a cent, three significant digits (`$0.000123`), never `1e-05`."""
    if value is None:
        return "—"
    sign = "-" if value < 0 else ""
    size = abs(value)
    if size == 0 or round(size, 2) >= 0.01:
        return f"{sign}${size:,.2f}"
    decimals = min(12, 2 - math.floor(math.log10(size)))
    return f"{sign}${size:.{decimals}f}"


def count(value: float | None) -> str:
    return "—" if value is None else f"{round(value):,}"


def share(value: float | None) -> str:
    """A rate in 0..1 as a whole percent (one decimal under 10%)."""
    if value is None:
        return "—"
    pct = 100 * value
    return f"{pct:.1f}%" if 0 < pct < 10 else f"{pct:.0f}%"


def pct(value: float | None) -> str:
    """A figure already in percent (saved %)."""
    return "—" if value is None else f"{value:.0f}%"


def ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def quality(value: dict[str, Any] | None) -> str:
    """Shadow checks' agreement: `82% (75-88%) n=120`, flagged below the route's target."""
    if value is None:
        return "—"
    if value["estimate"] is None:
        return f"no conclusive checks ({value['inconclusive'] + value['errors']} other)"
    low, high = value["interval_95"]
    interval = f"{share(low).removesuffix('%')}-{share(high)}"
    text = f"{share(value['estimate'])} ({interval}) n={value['checks']:,}"
    return text + (f" below target {share(value['target'])}" if value["below_target"] else "")


def text(value: Any) -> str:
    return "—" if value is None else str(value)


_SHOW: dict[str, Callable[[Any], str]] = {
    "money": money,
    "count": count,
    "share": share,
    "pct": pct,
    "ms": ms,
    "quality": quality,
    "text": text,
}


def show(value: Any, kind: Kind) -> str:
    return _SHOW[kind](value)
