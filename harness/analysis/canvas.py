"""What every figure of a report shares: a figure on matplotlib's Agg canvas (no GUI backend, no global pyplot
state) and plain tick labels on a log axis."""

from __future__ import annotations

import math

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter


def plain_log_labels(axis) -> None:
    """Tick labels like 2 and 0.5 on a log axis instead of 2×10⁰; call once the data is drawn.

    Minor ticks get labels where the axis spans less than two decades, where one major tick or none
    leaves a value unreadable: every one below a factor 3, else 2, 3 and 5 below 10, else 2 and 5.
    """
    low, high = sorted(axis.get_view_interval())
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    if low > 0 and high / low < 100:
        shown = range(1, 10) if high / low < 3 else (2, 3, 5) if high / low < 10 else (2, 5)

        def minor(v: float, _) -> str:
            return f"{v:g}" if round(v / 10 ** math.floor(math.log10(v))) in shown else ""

        axis.set_minor_formatter(FuncFormatter(minor))
    else:
        axis.set_minor_formatter(NullFormatter())


def new_figure(width: float, height: float) -> Figure:
    """A figure laid out by constrained layout, drawn without pyplot."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig
