"""Bar charts as SVG, drawn on the server: a page needs no script and nothing fetched to
show one. A chart is a list of bars; the template writes them as <rect> elements."""

from __future__ import annotations

WIDTH, HEIGHT, GAP = 720, 180, 2
MAX_BARS = 60


def bar_chart(points: list[tuple[str, float]], unit: str = "") -> dict:
    """`points`: (label, value) in order, at most MAX_BARS shown (the rest summed as "other")."""
    if len(points) > MAX_BARS:
        points = points[:MAX_BARS - 1] + [("other", sum(v for _, v in points[MAX_BARS - 1:]))]
    top = max((v for _, v in points), default=0.0) or 1.0
    width = (WIDTH - GAP * max(0, len(points) - 1)) / max(1, len(points))
    bars = []
    for index, (label, value) in enumerate(points):
        height = max(0.0, value) / top * (HEIGHT - 20)
        bars.append({"x": round(index * (width + GAP), 2), "y": round(HEIGHT - height, 2),
                     "w": round(width, 2), "h": round(height, 2), "label": label,
                     "title": f"{label}: {value:,.6g}{(' ' + unit) if unit else ''}"})
    return {"width": WIDTH, "height": HEIGHT, "bars": bars, "top": max((v for _, v in points), default=0.0),
            "unit": unit,
            "first": points[0][0] if points else "", "last": points[-1][0] if points else ""}


def stacked_chart(labels: list[str], series: list[tuple[str, list[float]]], unit: str = "") -> dict:
    """Bars over time, each stacked from the groups' values: `labels` the buckets,
    `series` [(group, value per bucket)] (at most seven: the stylesheet's colours)."""
    if not labels or not series:
        return {"bars": [], "top": 0.0}
    heights = [sum(values[i] for _, values in series) for i in range(len(labels))]
    top = max(heights) or 1.0
    width = (WIDTH - GAP * max(0, len(labels) - 1)) / len(labels)
    bars = []
    for index, label in enumerate(labels):
        y = float(HEIGHT)
        for colour, (group, values) in enumerate(series):
            value = max(0.0, values[index])
            if not value:
                continue
            height = value / top * (HEIGHT - 20)
            y -= height
            bars.append({"x": round(index * (width + GAP), 2), "y": round(y, 2), "w": round(width, 2),
                         "h": round(height, 2), "colour": colour,
                         "title": f"{label}, {group}: {value:,.6g}{(' ' + unit) if unit else ''}"})
    return {"width": WIDTH, "height": HEIGHT, "bars": bars, "top": max(heights), "unit": unit,
            "first": labels[0], "last": labels[-1], "legend": [group for group, _ in series]}
