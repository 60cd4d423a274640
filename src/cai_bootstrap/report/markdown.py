"""Render the report as Markdown.

Plots are referenced as PNG files under ``report_assets/`` next to ``report.md``
(written by `cai_bootstrap.report.write_report`), so the file stays small and
readable in any viewer; the tables carry the same numbers as the HTML report.
"""

from __future__ import annotations

import re

from cai_bootstrap.report.figures import FIGURE, gate_text
from cai_bootstrap.report.load import RunData, StageData
from cai_bootstrap.report.plots_common import Plot
from cai_bootstrap.report.tables import (
    score_cell,
    NOT_RUN,
    Table,
    clip,
    cost_table,
    answerer_table,
    family_table,
    knowledge_table,
    rounds_table,
    provenance_text,
    retained_table,
    run_facts,
    safety_gate_lines,
    safety_table,
    xstest_type_table,
    summary_table,
    verdict_text,
    versions_table,
    yield_table,
)

ASSETS_DIR = "report_assets"


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\r", "").replace("\n", "<br>")


def md_table(table: Table) -> str:
    align = ["---" if i in table.text_columns else "---:" for i in range(len(table.headers))]
    lines = ["| " + " | ".join(_cell(h) for h in table.headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines)


def _fence(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def _plot(plots: dict[str, Plot | str], key: str) -> list[str]:
    p = plots.get(key)
    if isinstance(p, Plot):
        return [f"![{p.title}]({ASSETS_DIR}/{p.key}.png)", "", f"*{p.caption}*", ""]
    return [f"_{p or NOT_RUN}_", ""]


def _samples(s: StageData) -> list[str]:
    out: list[str] = []
    if s.kept_samples or s.dropped_samples:
        out += ["#### Training records", ""]
        for rec in s.kept_samples + s.dropped_samples:
            status = "kept" if rec.get("kept") else f"dropped: {rec.get('drop_reason') or 'unknown'}"
            out += [
                f"**{rec.get('key', '?')}** · family `{rec.get('family', '?')}` · {status} · "
                f"made by: {provenance_text(rec)}",
                "",
            ]
            for fld in ("prompt", "chosen", "rejected"):
                if rec.get(fld):
                    out += [f"{fld}:", "", _fence(clip(rec[fld])), ""]
            if verdict_text(rec):
                out += [f"verdicts: {verdict_text(rec)}", ""]
    if s.heldout_samples:
        out += [f"#### Held-out outputs (model: {s.heldout_samples_model})", ""]
        for row in s.heldout_samples:
            mark = "PASS" if row.get("passed") else "FAIL"
            reason = f" – {row['reason']}" if row.get("reason") else ""
            out += [
                f"**{mark}** · `{row.get('family', '?')}` · {row.get('id', '')}{reason}",
                "",
                "input:",
                "",
                _fence(clip(row.get("prompt"), 500)),
                "",
                "output:",
                "",
                _fence(clip(row.get("output"), 500)),
                "",
            ]
    if not out:
        out = ["_No samples (not run)._", ""]
    return out


def _stage(s: StageData) -> list[str]:
    out = [f"### {s.name}", ""]
    meta = [f"kind `{s.kind or '–'}`", f"state **{s.state}**"]
    if s.heldout and s.heldout.mean is not None:
        meta.append(f"{FIGURE} **{score_cell(s.heldout)}**")
    if s.metrics is not None:
        meta.append(f"gate {gate_text(s.metrics, s.threshold)}")
    elif s.threshold is not None:
        meta.append(f"threshold {s.threshold:.0%}")
    if s.families:
        meta.append("families " + ", ".join(f"`{f}`" for f in s.families))
    out += [" · ".join(meta), ""]
    if s.description:
        out += [s.description, ""]
    message = (s.status or {}).get("message")
    if message:
        out += [f"> {message}", ""]
    if s.state == NOT_RUN:
        return out + ["_This stage was not run._", ""]
    fam = family_table(s)
    if fam:
        out += ["#### Held-out success per family", "", md_table(fam), ""]
    answerers = answerer_table(s)
    if answerers:
        out += ["#### Who answered the first data (answerer probe)", "", md_table(answerers), ""]
    rounds = rounds_table(s)
    if rounds:
        out += ["#### Rounds of self-training", "", md_table(rounds), ""]
    knowledge = knowledge_table(s)
    if knowledge:
        out += ["#### Held-out success by what the base model knows", "", md_table(knowledge), ""]
    safety = safety_table(s)
    if safety:
        out += ["#### Safety before / after", "", md_table(safety), ""]
        types = xstest_type_table(s)
        if types:
            out += ["#### XSTest refusals by prompt type", "", md_table(types), ""]
        gate = safety_gate_lines(s)
        if gate:
            out += ["Safety gate: " + "; ".join(f"{k}: {v}" for k, v in gate), ""]
    if s.train_log_source:
        out += [f"Training log: `{s.name}/{s.train_log_source}` ({len(s.train_log)} records)", ""]
    return out + _samples(s)


def render_markdown(run: RunData, plots: dict[str, Plot | str]) -> str:
    out = [f"# Run report: {run.run_id}", ""]
    out += ["| | |", "|---|---|"] + [f"| **{k}** | {_cell(v)} |" for k, v in run_facts(run)] + [""]
    warnings = run.all_warnings
    if warnings:
        out += ["> [!WARNING]", f"> **{len(warnings)} warning(s)**", ">"] + [f"> - {_cell(w)}" for w in warnings] + [""]
    out += ["## Summary", "", md_table(summary_table(run)), ""]
    out += ["## Success per stage vs threshold", ""] + _plot(plots, "success")
    out += ["## Success per task family", ""] + _plot(plots, "families")
    out += ["## Retained skills", ""] + _plot(plots, "retained")
    retained = retained_table(run)
    if retained:
        out += [md_table(retained), ""]
    out += ["## Bootstrap contribution (control)", ""] + _plot(plots, "control")
    out += ["## Training curves", ""] + _plot(plots, "training")
    out += ["## Dataset yield per filter", ""] + _plot(plots, "yield") + [md_table(yield_table(run)), ""]
    out += ["## Time and tokens per stage", ""] + _plot(plots, "cost") + [md_table(cost_table(run)), ""]
    out += ["## Stages", ""]
    for s in run.stages:
        out += _stage(s)
    out += ["## Environment", "", md_table(versions_table(run)) if run.versions else "_No versions recorded._", ""]
    if run.input_hashes:
        out += ["Input hashes (sha256, first 12 hex digits):", ""]
        out += [f"- `{k}`: `{v[:12]}`" for k, v in run.input_hashes.items()] + [""]
    return "\n".join(out).rstrip() + "\n"
