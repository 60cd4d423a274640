"""The run report: ``report.md`` and a self-contained ``report.html`` with plots.

    from cai_bootstrap.report import write_report
    md_path, html_path = write_report(Path("runs/my-run"))

Inputs: a run directory (``manifest.json`` required; every per-stage file optional,
missing parts are shown as "not run"). Outputs, each written atomically:

- ``report.html``: one file, CSS inline, plots as ``data:`` PNG URIs, no scripts.
- ``report.md``: the same tables; plots as ``report_assets/<plot>.png`` next to it.

Modules: ``load`` (run dir -> `RunData`), ``plots`` (the figure list and `render_plots`;
its figures in ``plots_stages`` and ``plots_process``, shared style in ``plots_common``),
``tables`` (table rows shared by both formats), ``markdown``, ``html``, ``build``
(`render_report`, `write_report`).
"""

from cai_bootstrap.report.build import render_report, write_report
from cai_bootstrap.report.load import ReportError, RunData, load_run

__all__ = ["ReportError", "RunData", "load_run", "render_report", "write_report"]
