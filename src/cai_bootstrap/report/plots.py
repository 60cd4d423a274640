"""The report's figures, drawn with matplotlib (object API, Agg canvas, no pyplot state).

Each ``plot_*`` takes a `RunData` and returns a `Figure`, or None when the run has
nothing to draw for it (the renderers then say why). `PLOTS` lists them in report
order; `render_plots` turns them into PNG bytes. The figures live in `plots_stages`
(stage results) and `plots_process` (training, data, cost); the palette, `Plot` and
`png_data_uri` (an ``<img src>`` for the self-contained HTML) in `plots_common`.
"""

from __future__ import annotations

from collections.abc import Callable

import matplotlib
from matplotlib.figure import Figure

from cai_bootstrap.report.load import RunData
from cai_bootstrap.report.plots_common import PASS, STYLE, Plot, figure_png
from cai_bootstrap.report.plots_process import plot_cost, plot_training, plot_yield
from cai_bootstrap.report.plots_stages import plot_control, plot_families, plot_retained, plot_success

# ``PASS`` is re-exported for callers that match the report's colours (the browser test).
__all__ = ["PASS", "PLOTS", "Plot", "render_plots"]


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


def render_plots(run: RunData) -> dict[str, Plot | str]:
    """Every plot key -> a rendered `Plot`, or the sentence saying why it is missing."""
    out: dict[str, Plot | str] = {}
    with matplotlib.rc_context(STYLE):
        for key, title, caption, build, missing in PLOTS:
            fig = build(run)
            out[key] = missing if fig is None else Plot(key, title, caption, figure_png(fig))
    return out
