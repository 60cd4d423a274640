"""Render a run's report and write ``report.md`` (+ ``report_assets/``) and ``report.html``."""

from __future__ import annotations

from pathlib import Path

from cai_bootstrap.jsonl import atomic_write_bytes, atomic_write_text
from cai_bootstrap.report.html import render_html
from cai_bootstrap.report.load import load_run
from cai_bootstrap.report.markdown import ASSETS_DIR, render_markdown
from cai_bootstrap.report.plots import render_plots
from cai_bootstrap.report.plots_common import Plot


def render_report(run_dir: str | Path) -> tuple[str, str, dict[str, Plot | str]]:
    """Markdown text, HTML text and the plots (key -> `Plot` or why it is missing), writing nothing."""
    run = load_run(run_dir)
    plots = render_plots(run)
    return render_markdown(run, plots), render_html(run, plots), plots


def write_report(run_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.md`` (+ ``report_assets/*.png``) and ``report.html`` into ``run_dir``."""
    run_dir = Path(run_dir)
    markdown, html, plots = render_report(run_dir)
    assets = run_dir / ASSETS_DIR
    assets.mkdir(exist_ok=True)
    written = set()
    for p in plots.values():
        if isinstance(p, Plot):
            atomic_write_bytes(assets / f"{p.key}.png", p.png)
            written.add(f"{p.key}.png")
    for stale in assets.glob("*.png"):  # plots that no longer apply (the directory is the report's own)
        if stale.name not in written:
            stale.unlink()
    md_path, html_path = run_dir / "report.md", run_dir / "report.html"
    atomic_write_text(md_path, markdown)
    atomic_write_text(html_path, html)
    for path in (md_path, html_path, *(assets / name for name in written)):
        path.chmod(0o644)  # temp files are created 0600; a report is meant to be shared
    return md_path, html_path
