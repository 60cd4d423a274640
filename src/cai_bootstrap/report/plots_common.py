"""What the report's figures share: palette, rc style, the `Plot` record, axis helpers, PNG output.

matplotlib is switched to the Agg canvas here, before any figure module draws (object
API, no pyplot state). The figures are in `plots_stages` and `plots_process`; the list
of them and `render_plots` in `plots`.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # never open a window, whatever the environment says

from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import PercentFormatter  # noqa: E402

from cai_bootstrap.report.load import StageData  # noqa: E402

PASS = "#2e9e5b"
FAIL = "#d1495b"
BASE = "#a3acb9"
CONTROL = "#f0a202"
MODEL = "#3b6fb6"
THRESHOLD = "#222222"
GRID = "#e6e8eb"
#: Drop reasons: no greens, so "kept" stays the only green.
DROP_COLOURS = ["#f28e2b", "#e15759", "#b07aa1", "#9c755f", "#edc948", "#ff9da7", "#bab0ac", "#76b7b2"]
DPI = 110

STYLE = {
    "font.size": 9.5,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#6b7280",
    "axes.grid": True,
    "grid.color": GRID,
    "axes.axisbelow": True,
    "legend.frameon": False,
    "legend.fontsize": 8.5,
}


@dataclass
class Plot:
    key: str
    title: str
    caption: str
    png: bytes


def new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def pct_axis(ax: Axes, top: float = 1.08) -> None:
    ax.set_ylim(0, top)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))


def stage_passed(s: StageData) -> bool:
    if s.passed is not None:
        return s.passed
    return bool(s.heldout and s.heldout.mean is not None and s.threshold is not None and s.heldout.mean >= s.threshold)


def wrap_label(label: str, width: int = 14) -> str:
    """Break long stage/family names at '-' or '_' so tick labels stay readable."""
    if len(label) <= width:
        return label
    parts, line, out = label.replace("_", "_\u200b").replace("-", "-\u200b").split("\u200b"), "", []
    for part in parts:
        if line and len(line) + len(part) > width:
            out.append(line)
            line = ""
        line += part
    out.append(line)
    return "\n".join(out)


def bar_label(ax: Axes, x: float, y: float, text: str, **kw) -> None:
    ax.annotate(text, (x, y), xytext=(0, 2), textcoords="offset points", ha="center", va="bottom", fontsize=8, **kw)


def rate_label(ax: Axes, x: float, v: float, *, dark: bool = True, size: float = 8.5) -> None:
    """A percentage inside the top of a 0..1 bar (clear of threshold lines), above it when the bar is short."""
    if v >= 0.2:
        ax.annotate(
            f"{v:.0%}",
            (x, v),
            xytext=(0, -3),
            textcoords="offset points",
            ha="center",
            va="top",
            fontsize=size,
            fontweight="bold",
            color="white" if dark else "#374151",
        )
    else:
        bar_label(ax, x, v, f"{v:.0%}", color="#374151")


def min_slots(ax: Axes, n: int, slots: float = 2.6) -> None:
    """Keep bars from growing fat when there are only one or two groups."""
    if n < slots:
        centre = (n - 1) / 2
        ax.set_xlim(centre - slots / 2, centre + slots / 2)


def figure_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
    return buf.getvalue()


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
