"""The figures about how a run went: training curves, dataset yield per filter, time and tokens.

Each ``plot_*`` takes a `RunData` and returns a `Figure`, or None when the run has
nothing to draw for it (the renderers then say why).
"""

from __future__ import annotations

import math

from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, PercentFormatter

from cai_bootstrap.report.load import RunData
from cai_bootstrap.report.plots_common import DROP_COLOURS, PASS, bar_label, new_figure, wrap_label


def _series(rows: list[dict], phase: str, key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for i, r in enumerate(x for x in rows if x.get("phase", "sft") == phase):
        y = r.get(key)
        if isinstance(y, (int, float)) and not isinstance(y, bool) and math.isfinite(y):
            step = r.get("step")
            xs.append(float(step) if isinstance(step, (int, float)) else float(i + 1))
            ys.append(float(y))
    return xs, ys


def plot_training(run: RunData) -> Figure | None:
    """SFT loss, DPO loss and DPO reward margins per optimizer step, one line per stage."""
    panels = [("sft", "loss", "SFT loss"), ("dpo", "loss", "DPO loss"), ("dpo", "rewards/margins", "DPO reward margin")]
    data = []
    for phase, key, title in panels:
        lines = [(s.name, *_series(s.train_log, phase, key)) for s in run.stages]
        lines = [ln for ln in lines if ln[1]]
        if lines:
            data.append((title, key, lines))
    if not data:
        return None
    colours = {s.name: colormaps["tab10"](i % 10) for i, s in enumerate(run.stages)}
    fig = new_figure(max(6.0, 3.9 * len(data)), 3.3)
    axes = fig.subplots(1, len(data), squeeze=False)[0]
    shown: dict[str, Line2D] = {}
    for ax, (title, key, lines) in zip(axes, data, strict=True):
        for name, xs, ys in lines:
            (ln,) = ax.plot(
                xs,
                ys,
                color=colours[name],
                linewidth=1.6,
                marker="o" if len(xs) < 12 else None,
                markersize=3,
                label=name,
            )
            shown.setdefault(name, ln)
        if key == "rewards/margins":
            ax.axhline(0, color="#6b7280", linewidth=0.8)
        ax.set_title(title, loc="left")
        ax.set_xlabel("optimizer step")
    fig.legend(handles=list(shown.values()), loc="outside lower center", ncol=min(6, len(shown)))
    return fig


def plot_yield(run: RunData) -> Figure | None:
    """Dataset yield: generated candidates split into kept and each filter's drops."""
    stages = [s for s in run.stages if s.data and s.data.generated]
    if not stages:
        return None
    reasons = sorted({r for s in stages for r in s.data.by_filter})
    colours = {r: DROP_COLOURS[i % len(DROP_COLOURS)] for i, r in enumerate(reasons)}
    fig = new_figure(9.5, max(2.4, 0.55 * len(stages) + 1.6))
    ax = fig.add_subplot()
    y = list(range(len(stages)))[::-1]
    for yi, s in zip(y, stages, strict=True):
        total = s.data.generated
        ax.barh(yi, s.data.kept / total, color=PASS, height=0.6)
        left = s.data.kept / total
        for r in reasons:
            n = s.data.by_filter.get(r, 0)
            if n:
                ax.barh(yi, n / total, left=left, color=colours[r], height=0.6)
                left += n / total
        ax.annotate(
            f"{s.data.kept:,} of {total:,} kept ({s.data.kept / total:.0%})",
            (max(left, 1.0), yi),
            xytext=(5, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    ax.set_yticks(y, [s.name for s in stages])
    ax.set_xlabel("share of generated candidate records")
    ax.set_xlim(0, 1.32)
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.grid(axis="y", visible=False)
    handles = [Patch(color=PASS, label="kept")] + [Patch(color=colours[r], label=f"dropped: {r}") for r in reasons]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(4, len(handles)))
    return fig


def _human(n: float, _pos: object = None) -> str:
    for unit, div in (("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.1f}{unit}".replace(".0", "")
    return f"{n:.0f}"


def plot_cost(run: RunData) -> Figure | None:
    """Wall time per phase and tokens generated / trained, per stage."""
    timed = [s for s in run.stages if s.timings]
    tokened = [s for s in run.stages if s.tokens]
    if not timed and not tokened:
        return None
    n = int(bool(timed)) + int(bool(tokened))
    if max(len(timed), len(tokened)) > 4:  # many stages: one panel above the other, each full width
        fig = new_figure(max(6.0, 1.1 * max(len(timed), len(tokened)) + 2.5), 3.2 * n)
        axes = list(fig.subplots(n, 1, squeeze=False)[:, 0])
    else:
        fig = new_figure(max(6.0, 4.8 * n), 3.4)
        axes = list(fig.subplots(1, n, squeeze=False)[0])
    if timed:
        ax = axes.pop(0)
        total_max = max(s.timings.get("total_s", sum(s.timings.values())) for s in timed)
        div, unit = (60.0, "min") if total_max >= 180 else (1.0, "s")
        phases = [
            ("generate_s", "generate", "#7aa6d8"),
            ("train_s", "train", "#3b6fb6"),
            ("eval_s", "evaluate", "#9b7ed1"),
        ]
        for i, s in enumerate(timed):
            bottom = 0.0
            for key, _label, colour in phases:
                v = s.timings.get(key, 0.0) / div
                ax.bar(i, v, 0.6, bottom=bottom, color=colour)
                bottom += v
            total = s.timings.get("total_s")
            if total is not None and total / div > bottom * 1.01:
                ax.bar(i, total / div - bottom, 0.6, bottom=bottom, color="#d1d5db")
                bottom = total / div
            bar_label(ax, i, bottom, f"{bottom:.1f}")
        ax.set_xticks(range(len(timed)), [wrap_label(s.name) for s in timed], fontsize=8)
        ax.set_ylabel(f"wall time ({unit})")
        ax.set_title("Time per stage", loc="left")
        ax.grid(axis="x", visible=False)
        ax.legend(
            handles=[Patch(color=c, label=lbl) for _k, lbl, c in phases] + [Patch(color="#d1d5db", label="other")],
            loc="upper left",
            fontsize=7.5,
        )
        ax.set_ylim(0, ax.get_ylim()[1] * 1.35)
    if tokened:
        ax = axes.pop(0)
        keys = sorted({k for s in tokened for k in s.tokens})
        w = 0.8 / max(1, len(keys))
        colours = ["#f0a202", "#3b6fb6", "#2e9e5b", "#9b7ed1"]
        for j, key in enumerate(keys):
            for i, s in enumerate(tokened):
                v = s.tokens.get(key)
                if v is not None:
                    x = i - 0.4 + w * (j + 0.5)
                    ax.bar(x, v, w, color=colours[j % len(colours)], label=key if i == 0 else None)
                    bar_label(ax, x, v, _human(v))
        ax.set_xticks(range(len(tokened)), [wrap_label(s.name) for s in tokened], fontsize=8)
        ax.yaxis.set_major_formatter(FuncFormatter(_human))
        ax.set_ylabel("tokens")
        ax.set_title("Tokens per stage", loc="left")
        ax.grid(axis="x", visible=False)
        ax.legend(loc="upper left", fontsize=7.5)
        ax.set_ylim(0, ax.get_ylim()[1] * 1.25)
    return fig
