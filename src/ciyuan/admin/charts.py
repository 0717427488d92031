"""Bar charts as inline SVG, drawn on the server: no JavaScript, no CDN, works offline.

Colours come from CSS classes (``series-0`` …) in the dashboard's stylesheet, so the strict
Content-Security-Policy needs no inline styles. Every text is escaped; every bar carries a
``<title>`` so hovering shows its exact value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from markupsafe import Markup

WIDTH: Final = 720
HEIGHT: Final = 220
_LEFT: Final = 56
_RIGHT: Final = 8
_TOP: Final = 10
_BOTTOM: Final = 26
_GRID_LINES: Final = 4
_X_LABELS_MAX: Final = 8


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: Sequence[Decimal]


def nice_ceiling(value: Decimal) -> Decimal:
    """The smallest of 1, 2, 2.5, 5 times a power of ten at or above ``value`` (> 0)."""
    if value <= 0:
        return Decimal(1)
    exponent = value.adjusted()
    for step in (1, 2, Decimal("2.5"), 5, 10):
        candidate = Decimal(step).scaleb(exponent)
        if candidate >= value:
            return candidate
    raise AssertionError("unreachable: 10 × 10^exponent is always above value")


def stacked_bars(
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    format_value: Callable[[Decimal], str],
) -> Markup:
    """Bars for each label, the series stacked bottom to top, with a y axis and a legend."""
    assert series and all(len(s.values) == len(labels) for s in series)
    totals = [sum((s.values[i] for s in series), Decimal(0)) for i in range(len(labels))]
    top = nice_ceiling(max(totals, default=Decimal(0)))
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    slot = plot_w / max(1, len(labels))
    bar_w = max(1.0, slot * 0.72)
    # Markup(literal).format(...) escapes every argument: no text reaches the SVG unescaped.
    parts: list[Markup] = [
        Markup(
            '<figure class="chart-box"><svg class="chart" viewBox="0 0 {} {}" role="img" '
            'aria-label="{}" xmlns="http://www.w3.org/2000/svg"><title>{}</title>'
        ).format(WIDTH, HEIGHT, title, title)
    ]
    for i in range(_GRID_LINES + 1):
        y = _TOP + plot_h - plot_h * i / _GRID_LINES
        parts.append(
            Markup(
                '<line class="grid" x1="{}" x2="{}" y1="{:.1f}" y2="{:.1f}"/>'
                '<text class="axis" x="{}" y="{:.1f}" text-anchor="end">{}</text>'
            ).format(
                _LEFT, WIDTH - _RIGHT, y, y, _LEFT - 6, y + 4, format_value(top * i / _GRID_LINES)
            )
        )
    every = max(1, -(-len(labels) // _X_LABELS_MAX))
    for index, label in enumerate(labels):
        x = _LEFT + slot * index + (slot - bar_w) / 2
        base = float(_TOP + plot_h)
        tip = [label] + [f"{s.name}: {format_value(s.values[index])}" for s in series]
        parts.append(Markup("<g><title>{}</title>").format(" · ".join(tip)))
        for number, one in enumerate(series):
            height = float(one.values[index] / top) * plot_h
            if height <= 0:
                continue
            base -= height
            parts.append(
                Markup(
                    '<rect class="bar series-{}" x="{:.1f}" y="{:.1f}" width="{:.1f}" '
                    'height="{:.1f}" rx="1.5"/>'
                ).format(number, x, base, bar_w, height)
            )
        parts.append(Markup("</g>"))
        if index % every == 0:
            parts.append(
                Markup(
                    '<text class="axis" x="{:.1f}" y="{}" text-anchor="middle">{}</text>'
                ).format(x + bar_w / 2, HEIGHT - 8, label)
            )
    parts.append(Markup('</svg><figcaption class="legend">'))
    parts.extend(
        Markup('<span class="legend-item"><span class="swatch series-{}"></span>{}</span>').format(
            n, one.name
        )
        for n, one in enumerate(series)
    )
    parts.append(Markup("</figcaption></figure>"))
    return Markup("").join(parts)
