"""The report's figures, drawn with matplotlib (object API, Agg canvas, no pyplot state).

Each ``plot_*`` takes a `RunData` and returns a `Figure`, or None when the run has
nothing to draw for it (the renderers then say why). `render_plots` turns them into
PNG bytes; `png_data_uri` makes an ``<img src>`` for the self-contained HTML.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Callable
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # never open a window, whatever the environment says

from matplotlib import colormaps  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter, PercentFormatter  # noqa: E402

from cai_bootstrap.report.load import RunData, StageData  # noqa: E402

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

_STYLE = {
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


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _pct_axis(ax: Axes, top: float = 1.08) -> None:
    ax.set_ylim(0, top)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))


def _stage_passed(s: StageData) -> bool:
    if s.passed is not None:
        return s.passed
    return bool(s.heldout and s.heldout.mean is not None and s.threshold is not None and s.heldout.mean >= s.threshold)


def _wrap(label: str, width: int = 14) -> str:
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


def _bar_label(ax: Axes, x: float, y: float, text: str, **kw) -> None:
    ax.annotate(text, (x, y), xytext=(0, 2), textcoords="offset points", ha="center", va="bottom", fontsize=8, **kw)


def _rate_label(ax: Axes, x: float, v: float, *, dark: bool = True, size: float = 8.5) -> None:
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
        _bar_label(ax, x, v, f"{v:.0%}", color="#374151")


def _min_slots(ax: Axes, n: int, slots: float = 2.6) -> None:
    """Keep bars from growing fat when there are only one or two groups."""
    if n < slots:
        centre = (n - 1) / 2
        ax.set_xlim(centre - slots / 2, centre + slots / 2)


def plot_success(run: RunData) -> Figure | None:
    """Held-out success per stage (stage model, base model beside it) with the threshold marked."""
    stages = run.stages
    if not any(s.heldout for s in stages):
        return None
    fig = _figure(max(6.0, 1.35 * len(stages) + 2.5), 3.8)
    ax = fig.add_subplot()
    w = 0.36
    has_base = any(s.base_heldout for s in stages)
    for i, s in enumerate(stages):
        if s.base_heldout and s.base_heldout.mean is not None:
            ax.bar(i - w / 2, s.base_heldout.mean, w, color=BASE)
            _rate_label(ax, i - w / 2, s.base_heldout.mean, dark=False)
        x = i + w / 2 if has_base else i
        if s.heldout and s.heldout.mean is not None:
            ax.bar(x, s.heldout.mean, w, color=PASS if _stage_passed(s) else FAIL)
            _rate_label(ax, x, s.heldout.mean)
        else:
            ax.text(x, 0.03, "not run", rotation=90, ha="center", va="bottom", color="#6b7280", fontsize=8)
        if s.threshold is not None:
            ax.hlines(s.threshold, i - w - 0.06, i + w + 0.06, colors=THRESHOLD, linewidth=2.2)
    ax.set_xticks(range(len(stages)), [_wrap(s.name) for s in stages])
    _min_slots(ax, len(stages))
    _pct_axis(ax, 1.05)
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
    fig = _figure(max(3.6 * ncols + 0.6, 6.0), 3.3 * nrows + (0.4 if most > 4 else 0.0))
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
                _rate_label(ax, x, rate, size=7.5)
        if s.threshold is not None:
            ax.axhline(s.threshold, color=THRESHOLD, linestyle="--", linewidth=1.2)
        rotate = len(fams) > 4
        labels = fams if rotate else [_wrap(f, 12) for f in fams]
        ax.set_xticks(
            range(len(fams)),
            labels,
            rotation=40 if rotate else 0,
            ha="right" if rotate else "center",
            rotation_mode="anchor",
            fontsize=7.5 if rotate else 8,
        )
        _min_slots(ax, len(fams))
        _pct_axis(ax, 1.05)
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
    fig = _figure(max(5.5, 1.25 * len(cols) + 3.2), max(2.6, 0.5 * len(rows) + 1.8))
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
    ax.set_xticks(range(len(cols)), [_wrap(c) for c in cols], fontsize=8.5)
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
    fig = _figure(max(6.0, 1.7 * len(stages) + 2.5), 3.6)
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
                _rate_label(ax, i + dx, v, dark=color != BASE)
        if s.threshold is not None:
            ax.hlines(s.threshold, i - 1.6 * w, i + 1.6 * w, colors=THRESHOLD, linewidth=2)
    ax.set_xticks(range(len(stages)), [_wrap(s.name) for s in stages])
    _min_slots(ax, len(stages), 2.0)
    _pct_axis(ax, 1.05)
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
    fig = _figure(max(6.0, 3.9 * len(data)), 3.3)
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
    fig = _figure(9.5, max(2.4, 0.55 * len(stages) + 1.6))
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
        fig = _figure(max(6.0, 1.1 * max(len(timed), len(tokened)) + 2.5), 3.2 * n)
        axes = list(fig.subplots(n, 1, squeeze=False)[:, 0])
    else:
        fig = _figure(max(6.0, 4.8 * n), 3.4)
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
            _bar_label(ax, i, bottom, f"{bottom:.1f}")
        ax.set_xticks(range(len(timed)), [_wrap(s.name) for s in timed], fontsize=8)
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
                    _bar_label(ax, x, v, _human(v))
        ax.set_xticks(range(len(tokened)), [_wrap(s.name) for s in tokened], fontsize=8)
        ax.yaxis.set_major_formatter(FuncFormatter(_human))
        ax.set_ylabel("tokens")
        ax.set_title("Tokens per stage", loc="left")
        ax.grid(axis="x", visible=False)
        ax.legend(loc="upper left", fontsize=7.5)
        ax.set_ylim(0, ax.get_ylim()[1] * 1.25)
    return fig


#: (key, title, caption, builder, what to say when there is nothing to draw)
PLOTS: list[tuple[str, str, str, Callable[[RunData], Figure | None], str]] = [
    (
        "success",
        "Success per stage vs threshold",
        "Held-out success of each stage's model (green: gate passed, red: failed), the base model beside it in grey; "
        "the black bar is the stage's threshold.",
        plot_success,
        "No stage has been evaluated yet (not run).",
    ),
    (
        "families",
        "Success per task family",
        "Each stage's held-out success split by task family; dashed line: the stage's threshold.",
        plot_families,
        "No per-family results yet (not run).",
    ),
    (
        "retained",
        "Retained skills",
        "Each model (rows) on each stage's held-out set (columns). Cells right of the diagonal were not evaluated "
        "(a model is tested on its own and earlier stages' sets).",
        plot_retained,
        "No held-out results yet (not run).",
    ),
    (
        "control",
        "Bootstrap contribution: predecessor-made vs base-made data",
        "Same counts and training; only who made the training data differs. A stage model bar above the control bar "
        "means the earlier stages' models contributed.",
        plot_control,
        "The control experiment was not run (start the run with --control base).",
    ),
    (
        "training",
        "Training curves",
        "Loss per optimizer step of the training attempt each stage installed (the best one when retries all failed); DPO reward margin = chosen minus rejected "
        "implicit reward.",
        plot_training,
        "No training logs found (not run).",
    ),
    (
        "yield",
        "Dataset yield per filter",
        "Each stage's generated candidate records (100%) split into kept and each filter's drops; counts in the table.",
        plot_yield,
        "No data generated yet (not run).",
    ),
    (
        "cost",
        "Time and tokens per stage",
        "Wall time per phase and tokens generated / trained.",
        plot_cost,
        "No timings recorded yet (not run).",
    ),
]


def figure_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
    return buf.getvalue()


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render_plots(run: RunData) -> dict[str, Plot | str]:
    """Every plot key -> a rendered `Plot`, or the sentence saying why it is missing."""
    out: dict[str, Plot | str] = {}
    with matplotlib.rc_context(_STYLE):
        for key, title, caption, build, missing in PLOTS:
            fig = build(run)
            out[key] = missing if fig is None else Plot(key, title, caption, figure_png(fig))
    return out
