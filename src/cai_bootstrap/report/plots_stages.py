"""The figures about stage results: success vs threshold, per family, retained skills, the control.

Each ``plot_*`` takes a `RunData` and returns a `Figure`, or None when the run has
nothing to draw for it (the renderers then say why).
"""

from __future__ import annotations

import math

from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import PercentFormatter

from cai_bootstrap.report.load import RunData
from cai_bootstrap.report.plots_common import (
    BASE,
    CONTROL,
    FAIL,
    MODEL,
    PASS,
    THRESHOLD,
    min_slots,
    new_figure,
    pct_axis,
    rate_label,
    stage_passed,
    wrap_label,
)


def plot_success(run: RunData) -> Figure | None:
    """Held-out success per stage (stage model, base model beside it) with the threshold marked."""
    stages = run.stages
    if not any(s.heldout for s in stages):
        return None
    fig = new_figure(max(6.0, 1.35 * len(stages) + 2.5), 3.8)
    ax = fig.add_subplot()
    w = 0.36
    has_base = any(s.base_heldout for s in stages)
    for i, s in enumerate(stages):
        if s.base_heldout and s.base_heldout.mean is not None:
            ax.bar(i - w / 2, s.base_heldout.mean, w, color=BASE)
            rate_label(ax, i - w / 2, s.base_heldout.mean, dark=False)
        x = i + w / 2 if has_base else i
        if s.heldout and s.heldout.mean is not None:
            ax.bar(x, s.heldout.mean, w, color=PASS if stage_passed(s) else FAIL)
            rate_label(ax, x, s.heldout.mean)
        else:
            ax.text(x, 0.03, "not run", rotation=90, ha="center", va="bottom", color="#6b7280", fontsize=8)
        if s.threshold is not None:
            ax.hlines(s.threshold, i - w - 0.06, i + w + 0.06, colors=THRESHOLD, linewidth=2.2)
    ax.set_xticks(range(len(stages)), [wrap_label(s.name) for s in stages])
    min_slots(ax, len(stages))
    pct_axis(ax, 1.05)
    ax.set_ylabel("held-out success")
    ax.grid(axis="x", visible=False)
    handles = [Patch(color=PASS, label="stage model: gate passed"), Patch(color=FAIL, label="stage model: gate failed")]
    if has_base:
        handles.insert(0, Patch(color=BASE, label="base model"))
    handles.append(Line2D([], [], color=THRESHOLD, linewidth=2.2, label="threshold"))
    fig.legend(handles=handles, loc="outside lower center", ncol=4)
    return fig


def plot_families(run: RunData) -> Figure | None:
    """Per-family held-out success, one panel per stage that was evaluated."""
    stages = [s for s in run.stages if s.heldout and s.heldout.per_family]
    if not stages:
        return None
    most = max(len(s.heldout.per_family) for s in stages)
    ncols = min(3 if most <= 5 else 2, len(stages))
    nrows = math.ceil(len(stages) / ncols)
    fig = new_figure(max(3.6 * ncols + 0.6, 6.0), 3.3 * nrows + (0.4 if most > 4 else 0.0))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    w = 0.4
    for k, s in enumerate(stages):
        ax = axes[k // ncols][k % ncols]
        fams = list(s.heldout.per_family)
        base = s.base_heldout.per_family if s.base_heldout else {}
        for i, fam in enumerate(fams):
            rate = s.heldout.per_family[fam].rate
            if fam in base:
                ax.bar(i - w / 2, base[fam].rate, w, color=BASE)
            x = i + w / 2 if base else i
            # no held-out threshold (the constitutional stage has its safety gate): neutral colour
            color = MODEL if s.threshold is None else PASS if rate >= s.threshold else FAIL
            ax.bar(x, rate, w, color=color)
            if len(fams) <= 6:  # more bars than that are too thin to label; the tables carry the numbers
                rate_label(ax, x, rate, size=7.5)
        if s.threshold is not None:
            ax.axhline(s.threshold, color=THRESHOLD, linestyle="--", linewidth=1.2)
        rotate = len(fams) > 4
        labels = fams if rotate else [wrap_label(f, 12) for f in fams]
        ax.set_xticks(
            range(len(fams)),
            labels,
            rotation=40 if rotate else 0,
            ha="right" if rotate else "center",
            rotation_mode="anchor",
            fontsize=7.5 if rotate else 8,
        )
        min_slots(ax, len(fams))
        pct_axis(ax, 1.05)
        ax.grid(axis="x", visible=False)
        ax.set_title(s.name, loc="left")
    for k in range(len(stages), nrows * ncols):
        axes[k // ncols][k % ncols].set_visible(False)
    handles = [
        Patch(color=BASE, label="base model"),
        Patch(color=PASS, label="family at/above threshold"),
        Patch(color=FAIL, label="family below threshold"),
        Line2D([], [], color=THRESHOLD, linestyle="--", label="stage threshold"),
    ]
    if any(s.threshold is None for s in stages):
        handles.append(Patch(color=MODEL, label="stage without a held-out threshold"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 3))
    return fig


def retained_matrix(run: RunData) -> tuple[list[str], list[str], list[list[float | None]]]:
    """Rows: base (when evaluated) then each stage model; columns: each stage's held-out set.

    Cell (model m, set s): m's mean success on s's held-out cases; None where not evaluated.
    """
    evaluated = {n for s in run.stages for n in s.retained}
    sets = [s.name for s in run.stages if s.heldout or s.name in evaluated]
    rows: list[str] = []
    values: list[list[float | None]] = []
    base_row = [(b.mean if (b := run.stage(n).base_heldout) else None) for n in sets]
    if any(v is not None for v in base_row):
        rows.append("base")
        values.append(base_row)
    for s in run.stages:
        if not s.heldout:
            continue
        row: list[float | None] = []
        for n in sets:
            if n == s.name:
                row.append(s.heldout.mean)
            elif n in s.retained:
                row.append(s.retained[n].mean)
            else:
                row.append(None)
        rows.append(s.name)
        values.append(row)
    return rows, sets, values


def plot_retained(run: RunData) -> Figure | None:
    """Retained skills: each model (rows) on each stage's held-out set (columns)."""
    rows, cols, values = retained_matrix(run)
    if not rows or not cols:
        return None
    import numpy as np

    grid = np.array([[math.nan if v is None else v for v in r] for r in values], dtype=float)
    fig = new_figure(max(5.5, 1.25 * len(cols) + 3.2), max(2.6, 0.5 * len(rows) + 1.8))
    ax = fig.add_subplot()
    cmap = colormaps["RdYlGn"].with_extremes(bad="#f1f2f4")
    im = ax.imshow(grid, cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    for r, row in enumerate(values):
        for c, v in enumerate(row):
            if v is None:
                ax.text(c, r, "–", ha="center", va="center", color="#9ca3af")
            else:
                ax.text(
                    c,
                    r,
                    f"{v:.0%}",
                    ha="center",
                    va="center",
                    fontsize=9,
                    fontweight="bold",
                    color="white" if v < 0.22 or v > 0.85 else "#111827",
                )
    ax.set_xticks(range(len(cols)), [wrap_label(c) for c in cols], fontsize=8.5)
    ax.set_yticks(range(len(rows)), [f"{r} model" if r == "base" else r for r in rows], fontsize=8.5)
    ax.set_xlabel("held-out set of stage")
    ax.set_ylabel("model")
    ax.xaxis.set_label_position("top")
    ax.xaxis.tick_top()
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xticks([x - 0.5 for x in range(1, len(cols))], minor=True)
    ax.set_yticks([y - 0.5 for y in range(1, len(rows))], minor=True)
    ax.grid(which="minor", color="white", linewidth=2)
    ax.tick_params(which="minor", length=0)
    cbar = fig.colorbar(im, ax=ax, shrink=0.9, format=PercentFormatter(1.0, decimals=0))
    cbar.outline.set_visible(False)
    return fig


def plot_control(run: RunData) -> Figure | None:
    """Bootstrap contribution: model trained on predecessor-made data vs on base-made data."""
    stages = [s for s in run.stages if s.control and s.control.mean is not None]
    if not stages:
        return None
    fig = new_figure(max(6.0, 1.7 * len(stages) + 2.5), 3.6)
    ax = fig.add_subplot()
    w = 0.27
    for i, s in enumerate(stages):
        bars = [
            (-w, s.base_heldout.mean if s.base_heldout else None, BASE),
            (0.0, s.control.mean, CONTROL),
            (w, s.heldout.mean if s.heldout else None, MODEL),
        ]
        for dx, v, color in bars:
            if v is not None:
                ax.bar(i + dx, v, w, color=color)
                rate_label(ax, i + dx, v, dark=color != BASE)
        if s.threshold is not None:
            ax.hlines(s.threshold, i - 1.6 * w, i + 1.6 * w, colors=THRESHOLD, linewidth=2)
    ax.set_xticks(range(len(stages)), [wrap_label(s.name) for s in stages])
    min_slots(ax, len(stages), 2.0)
    pct_axis(ax, 1.05)
    ax.set_ylabel("held-out success")
    ax.grid(axis="x", visible=False)
    handles = [
        Patch(color=BASE, label="base model (untrained)"),
        Patch(color=CONTROL, label="control: trained on base-made data"),
        Patch(color=MODEL, label="stage model: trained on predecessor-made data"),
        Line2D([], [], color=THRESHOLD, linewidth=2, label="threshold"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=2)
    return fig
