"""Small charts drawn on the server as inline SVG: data in, markup out, no Django and no script.

The admin dashboard embeds the result as is, so every piece of text that reaches the markup goes
through `escape` here; a caller never has to think about it.
"""

from dataclasses import dataclass
from html import escape

BAR_COLOUR = "#417690"  # the admin's own header blue
PART_COLOUR = "#ba2121"  # the admin's error red
AXIS_COLOUR = "#999"
GRID_COLOUR = "#e8e8e8"


@dataclass(frozen=True)
class Bar:
    value: int  # full height
    label: str  # tooltip
    part: int = 0  # a bottom share drawn in the alarm colour (failed rows of a run)
    group: str = ""  # x-axis group, e.g. the day; a tick and label go where it changes
    href: str = ""  # optional link around the bar


def nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 × 10^n at or above `value` (at least 1), so axis ticks read well."""
    if value <= 1:
        return 1
    magnitude = 1
    while magnitude * 10 < value:
        magnitude *= 10
    return next(step * magnitude for step in (1, 2, 5, 10) if step * magnitude >= value)


def _number(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


MAX_BAR_WIDTH = 36


def _tick_count(ceiling: int) -> int:
    # Whole-number steps: 5 → 0..5 by 1, 20 → by 4, 100 → by 20; 1 and 2 step by 1.
    return 5 if ceiling % 5 == 0 else 4 if ceiling % 4 == 0 else ceiling


def bar_chart_svg(bars: list[Bar], *, title: str, width: int = 900, height: int = 240,
                  empty_text: str = "Nothing to show for this period.") -> str:
    """A bar chart as an `<svg>` element: one `<g class="bar">` per item, in order, scaled to the largest
    value, with a labelled y axis and a label under each new x group.
    """
    left, right, top, bottom = 56, 8, 12, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="staging-chart" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    if not bars:
        out.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="{AXIS_COLOUR}" '
                   f'font-size="13">{escape(empty_text)}</text></svg>')
        return "".join(out)

    ceiling = nice_ceiling(max(b.value for b in bars))
    ticks = _tick_count(ceiling)
    for i in range(ticks + 1):
        value = ceiling * i / ticks
        y = top + plot_h - plot_h * i / ticks
        out.append(f'<line x1="{left}" y1="{_number(y)}" x2="{width - right}" y2="{_number(y)}" '
                   f'stroke="{GRID_COLOUR if i else AXIS_COLOUR}"/>')
        out.append(f'<text x="{left - 6}" y="{_number(y + 4)}" text-anchor="end" font-size="11" '
                   f'fill="#666">{round(value):,}</text>')

    slot = plot_w / len(bars)
    bar_w = min(MAX_BAR_WIDTH, max(1.0, slot * 0.8))
    previous_group = None
    for index, bar in enumerate(bars):
        x = left + slot * index + (slot - bar_w) / 2
        if bar.group != previous_group:
            tick_x = left + slot * index
            out.append(f'<line x1="{_number(tick_x)}" y1="{top + plot_h}" x2="{_number(tick_x)}" '
                       f'y2="{top + plot_h + 5}" stroke="{AXIS_COLOUR}"/>')
            out.append(f'<text x="{_number(tick_x + 2)}" y="{height - 8}" font-size="11" '
                       f'fill="#666">{escape(bar.group)}</text>')
            previous_group = bar.group
        full = plot_h * bar.value / ceiling
        part = plot_h * min(bar.part, bar.value) / ceiling
        base = top + plot_h
        shapes = [f"<title>{escape(bar.label)}</title>",
                  f'<rect x="{_number(x)}" y="{_number(base - full)}" width="{_number(bar_w)}" '
                  f'height="{_number(full)}" fill="{BAR_COLOUR}"/>']
        if part:
            shapes.append(f'<rect class="part" x="{_number(x)}" y="{_number(base - part)}" '
                          f'width="{_number(bar_w)}" height="{_number(part)}" fill="{PART_COLOUR}"/>')
        group = f'<g class="bar" data-value="{bar.value}">{"".join(shapes)}</g>'
        if bar.href:
            group = f'<a href="{escape(bar.href)}">{group}</a>'
        out.append(group)
    out.append("</svg>")
    return "".join(out)
