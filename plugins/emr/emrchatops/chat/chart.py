"""The ``!emr report`` chart for Slack (DESIGN §13): a PNG, rendered with matplotlib's Agg backend.

Presentation only: it draws a :class:`emrchatops.domain.ledger.Report` — stacked hours per
local day (held / busy while unheld / idle / not watched) and the cost per day
as a line on its own axis. matplotlib is imported on the first chart or by
:func:`preload` (on a thread the plugin starts at activation on Slack: importing
it takes a second, activation does not wait), always with the Agg backend: the
bot has no display, and Agg is thread-safe enough when each chart has its own
``Figure`` (no pyplot global state).
"""

from __future__ import annotations

import io
import threading
from typing import Any

from emrchatops.domain.ledger import Report

# Colours: the status card's own (held orange, busy blue, idle green), not watched grey; cost in red.
SERIES = (
    ("held", "held", "#DAA038"),
    ("busy", "busy, unheld", "#439FE0"),
    ("idle", "idle", "#2EB886"),
    ("unwatched", "not watched", "#C8C8C8"),
)
COST_COLOR = "#A30200"
_import_lock = threading.Lock()


def headline(report: Report) -> str:
    """The totals under the chart's title."""
    total = report.total
    bound = "≤ " if total.cost.upper_bound else ""
    if total.unknown:  # a cost left out is never drawn as $0.00 of it: the total is a lower bound
        bound = "≥ " if not total.cost.upper_bound else "partial "
    unknown = len(total.unknown)
    estimated = " (estimated prices)" if total.cost.estimated or total.saving.estimated else ""
    return (
        f"total: {total.up.total_seconds() / 3600:.1f} h up, "
        # "\\$": a bare "$…$" pair is mathtext to matplotlib (italics, the dollar signs gone).
        f"{bound}\\${total.cost.dollars:,.2f}{estimated}"
        + (f" ({unknown} cluster{'s' if unknown != 1 else ''} unknown)" if unknown else "")
        + f", saved {'≥' if total.saving_unknown else '≈'} \\${total.saving.dollars:,.2f} by the automatic rules"
    )


def _matplotlib() -> tuple[Any, Any, Any]:
    """(Figure, PolyCollection, Patch), importing matplotlib once, with the Agg backend."""
    with _import_lock:  # matplotlib's first import is not thread-safe
        import matplotlib

        matplotlib.use("Agg", force=True)
        from matplotlib.collections import PolyCollection
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch

        return Figure, PolyCollection, Patch


def preload() -> None:
    """Import matplotlib now (a second or so), so that the first report does not wait for it."""
    _matplotlib()


def render(report: Report, title: str) -> bytes:
    """The chart as PNG bytes (1000 × 500 px).

    Each series of bars is one collection of rectangles, and the layout is fixed: 90 days
    drawn as 360 separate bar patches with an automatic layout took over a second.
    """
    figure_class, polygons, patch = _matplotlib()
    figure = figure_class(figsize=(10, 5), dpi=100)
    figure.subplots_adjust(left=0.07, right=0.91, top=0.83, bottom=0.13)
    axes = figure.add_subplot(1, 1, 1)
    days = [day for day, _ in report.days]
    bottom = [0.0] * len(days)
    handles = []
    for name, label, color in SERIES:
        hours = [getattr(figures, name).total_seconds() / 3600 for _, figures in report.days]
        if not any(hours):
            continue
        boxes = [
            [(i - 0.4, b), (i + 0.4, b), (i + 0.4, b + h), (i - 0.4, b + h)]
            for i, (b, h) in enumerate(zip(bottom, hours, strict=True))
            if h > 0
        ]
        axes.add_collection(polygons(boxes, facecolors=color, edgecolors="none"))
        handles.append(patch(facecolor=color, label=label))
        bottom = [b + h for b, h in zip(bottom, hours, strict=True)]
    axes.set_ylabel("hours per day (all managed clusters)")
    axes.set_ylim(0, max([*bottom, 1.0]) * 1.2)
    axes.grid(axis="y", alpha=0.3)
    # Local dates, thinned so that labels never overlap (at most ~15 labels).
    step = max(1, -(-len(days) // 15))
    positions = list(range(len(days)))
    axes.set_xticks(positions[::step])
    axes.set_xticklabels([day.strftime("%a\n%m-%d") for day in days][::step], fontsize=8)
    axes.set_xlim(-0.6, len(days) - 0.4)
    costs = [figures.cost.dollars for _, figures in report.days]
    cost_axes = axes.twinx()
    bound = "≤ " if report.total.cost.upper_bound else ""
    if report.total.unknown:  # a cost left out is never drawn as $0.00 of it: the line is a lower bound
        bound = "≥ " if not report.total.cost.upper_bound else "partial "
    (line,) = cost_axes.plot(
        positions,
        costs,
        color=COST_COLOR,
        marker="o" if len(days) <= 31 else None,
        linewidth=2,
        label=f"{bound}cost (USD)",
    )
    cost_axes.set_ylabel("cost per day (USD)", color=COST_COLOR)
    cost_axes.tick_params(axis="y", colors=COST_COLOR)
    cost_axes.set_ylim(0, max([*costs, 1.0]) * 1.2)
    axes.legend(
        [*handles, line],
        [h.get_label() for h in handles] + [line.get_label()],
        loc="upper left",
        fontsize=8,
        ncols=5,
        frameon=False,
    )
    axes.set_title(f"{title}\n{headline(report)}", fontsize=10)
    out = io.BytesIO()
    figure.savefig(out, format="png", pil_kwargs={"compress_level": 1})  # flat colours: fast, still small
    return out.getvalue()
