"""Quality vs share sent to the strong model, one panel per benchmark, as a standalone SVG."""

from __future__ import annotations

from html import escape
from typing import Any

_W, _H, _PAD = 300, 220, 40
_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b")


def _panel(benchmark: str, lines: dict[str, list[list[float]]], dx: int) -> list[str]:
    ys = [y for points in lines.values() for _, y in points]
    low, high = min(ys), max(ys)
    span = (high - low) or 1.0

    def xy(x: float, y: float) -> str:
        px = dx + _PAD + x * (_W - 1.5 * _PAD)
        py = _H - _PAD - (y - low) / span * (_H - 1.8 * _PAD)
        return f"{px:.1f},{py:.1f}"

    parts = [
        f'<text x="{dx + _W / 2}" y="16" text-anchor="middle" font-weight="bold">'
        f"{escape(benchmark)}</text>",
        f'<polyline fill="none" stroke="#999" stroke-dasharray="4 3" '
        f'points="{xy(0, lines_first(lines))} {xy(1, lines_last(lines))}"><title>random</title>'
        "</polyline>",
        f'<text x="{dx + _W / 2}" y="{_H - 6}" text-anchor="middle">share sent to strong</text>',
        f'<text x="{dx + 4}" y="{_PAD - 8}">accuracy {low:.2f} to {high:.2f}</text>',
    ]
    for (router, points), colour in zip(lines.items(), _COLOURS, strict=False):
        path = " ".join(xy(x, y) for x, y in points)
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" points="{path}">'
            f"<title>{escape(router)}</title></polyline>"
        )
    return parts


def lines_first(lines: dict[str, list[list[float]]]) -> float:
    return next(iter(lines.values()))[0][1]


def lines_last(lines: dict[str, list[list[float]]]) -> float:
    return next(iter(lines.values()))[-1][1]


def svg(report: dict[str, Any]) -> str:
    """The report's curves; routers in the legend, the random router dashed."""
    curves: dict[str, dict[str, list[list[float]]]] = report["curves"]
    width = _W * len(curves)
    body: list[str] = []
    for index, (benchmark, lines) in enumerate(curves.items()):
        body += _panel(benchmark, lines, index * _W)
    routers = list(next(iter(curves.values())))
    legend = [
        f'<text x="{10 + i * 160}" y="{_H + 14}" fill="{colour}">— {escape(router)}</text>'
        for i, (router, colour) in enumerate(zip(routers, _COLOURS, strict=False))
    ]
    legend.append(
        f'<text x="{10 + len(routers) * 160}" y="{_H + 14}" fill="#999">- - random</text>'
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{_H + 24}" '
        f'font-family="sans-serif" font-size="11"><rect width="100%" height="100%" fill="white"/>'
        + "".join(body + legend)
        + "</svg>\n"
    )
