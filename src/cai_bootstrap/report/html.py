"""Render the report as one self-contained HTML page.

Plots are embedded as ``data:image/png;base64`` URIs and the CSS is inline: no
scripts, no external requests, so the file can be mailed or archived as it is.
"""

from __future__ import annotations

from html import escape

from cai_bootstrap.report.figures import FIGURE, gate_text
from cai_bootstrap.report.load import RunData, StageData
from cai_bootstrap.report.plots_common import Plot, png_data_uri
from cai_bootstrap.report.tables import (
    score_cell,
    NOT_RUN,
    STATE_STYLE,
    Cell,
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

CSS = """
:root { --fg:#1f2937; --muted:#6b7280; --line:#e5e7eb; --bg:#f5f6f8; --card:#fff;
        --good:#1f7a45; --good-bg:#e3f4ea; --bad:#b4233a; --bad-bg:#fbe7ea; --warn:#8a5a00; --warn-bg:#fff4d6; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg);
       font:14px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width:1180px; margin:0 auto; padding:24px 20px 60px; }
h1 { font-size:26px; margin:0 0 4px; }
h2 { font-size:19px; margin:0 0 12px; }
h3 { font-size:16px; margin:18px 0 8px; }
h4 { font-size:13px; margin:16px 0 6px; text-transform:uppercase; letter-spacing:.04em; color:var(--muted); }
.sub { color:var(--muted); margin:0 0 16px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:18px 20px; margin:16px 0;
        box-shadow:0 1px 2px rgba(0,0,0,.04); }
.facts { display:grid; grid-template-columns:repeat(auto-fill, minmax(200px, 1fr)); gap:10px 20px; margin:0; }
.facts div { min-width:0; }
.facts dt { font-size:11px; text-transform:uppercase; letter-spacing:.05em; color:var(--muted); }
.facts dd { margin:0; font-weight:600; overflow-wrap:anywhere; }
.warnings { background:var(--warn-bg); border:1px solid #f1d27a; border-left:6px solid #e0a800; border-radius:10px;
            padding:12px 18px; margin:16px 0; }
.warnings strong { color:var(--warn); }
.warnings ul { margin:6px 0 0; padding-left:20px; }
nav { display:flex; flex-wrap:wrap; gap:6px; margin:12px 0; }
nav a { font-size:12.5px; padding:4px 10px; border-radius:999px; background:#e8ebf0; color:var(--fg);
        text-decoration:none; }
nav a:hover { background:#d9dee6; }
table { border-collapse:collapse; width:100%; font-size:13px; margin:6px 0 4px; }
.scroll { overflow-x:auto; }
th, td { padding:6px 9px; border-bottom:1px solid var(--line); text-align:right; white-space:nowrap; }
th { background:#f8f9fb; font-weight:600; color:#374151; border-bottom:2px solid var(--line); white-space:normal;
     vertical-align:bottom; }
th.t, td.t { text-align:left; }
td.wrap { white-space:normal; }
tbody tr:nth-child(even) td { background:#fbfbfc; }
.good { color:var(--good); font-weight:600; }
.bad { color:var(--bad); font-weight:600; }
.warn { color:var(--warn); font-weight:600; }
.muted { color:var(--muted); }
.badge { display:inline-block; font-size:11.5px; font-weight:700; padding:1px 8px; border-radius:999px;
         background:#eef0f3; color:var(--muted); vertical-align:middle; }
.badge.good { background:var(--good-bg); color:var(--good); }
.badge.bad { background:var(--bad-bg); color:var(--bad); }
.badge.warn { background:var(--warn-bg); color:var(--warn); }
figure { margin:4px 0 0; }
figure img { display:block; max-width:100%; height:auto; margin:0 auto; }
figcaption { color:var(--muted); font-size:12.5px; margin-top:6px; }
.missing { color:var(--muted); font-style:italic; padding:10px 0; }
.stage-head { display:flex; align-items:center; gap:10px; flex-wrap:wrap; }
.stage-head h2 { margin:0; }
.meta { color:var(--muted); font-size:13px; margin:4px 0 0; }
.message { border-left:3px solid var(--line); padding:2px 10px; color:#4b5563; margin:10px 0; }
.samples { display:grid; grid-template-columns:repeat(auto-fill, minmax(330px, 1fr)); gap:12px; }
.sample { border:1px solid var(--line); border-radius:8px; padding:10px 12px; background:#fcfcfd; min-width:0; }
.sample .who { font-size:12px; color:var(--muted); margin:2px 0 6px; overflow-wrap:anywhere; }
.sample .lbl { font-size:11px; text-transform:uppercase; letter-spacing:.05em; color:var(--muted); margin-top:6px; }
pre { white-space:pre-wrap; overflow-wrap:anywhere; margin:2px 0; padding:6px 8px; background:#f3f4f6;
      border-radius:6px; font:12px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; max-height:220px;
      overflow-y:auto; }
pre.chosen { background:#eef8f1; }
pre.rejected { background:#fbeff1; }
details summary { cursor:pointer; color:var(--muted); }
code { font:12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background:#f3f4f6; padding:0 4px;
       border-radius:4px; }
footer { color:var(--muted); font-size:12px; text-align:center; margin-top:30px; }
"""

SECTIONS = [
    ("summary", "Summary"),
    ("success", "Success vs threshold"),
    ("families", "Per family"),
    ("retained", "Retained skills"),
    ("control", "Control"),
    ("training", "Training"),
    ("yield", "Data yield"),
    ("cost", "Time & tokens"),
    ("stages", "Stages"),
    ("environment", "Environment"),
]


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def html_table(table: Table, wrap_columns: set[int] | None = None) -> str:
    wrap_columns = wrap_columns or set()

    def cls(i: int, extra: str = "") -> str:
        names = " ".join(
            n for n in ("t" if i in table.text_columns else "", "wrap" if i in wrap_columns else "", extra) if n
        )
        return f' class="{names}"' if names else ""

    head = "".join(f"<th{cls(i)}>{_e(h)}</th>" for i, h in enumerate(table.headers))
    body = []
    for row in table.rows:
        cells = []
        for i, c in enumerate(row):
            if isinstance(c, Cell) and table.headers[i] == "State":
                cells.append(f'<td{cls(i)}><span class="badge {c.style}">{_e(c.text)}</span></td>')
            else:
                cells.append(f"<td{cls(i, c.style if isinstance(c, Cell) else '')}>{_e(c)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _figure(plots: dict[str, Plot | str], key: str) -> str:
    p = plots.get(key)
    if isinstance(p, Plot):
        return (
            f'<figure><img alt="{_e(p.title)}" src="{png_data_uri(p.png)}">'
            f"<figcaption>{_e(p.caption)}</figcaption></figure>"
        )
    return f'<p class="missing">{_e(p or NOT_RUN)}</p>'


def _section(sid: str, title: str, body: str) -> str:
    return f'<section class="card" id="{sid}"><h2>{_e(title)}</h2>{body}</section>'


def _pre(text: object, cls: str = "", limit: int = 700) -> str:
    return f'<pre class="{cls}">{_e(clip(text, limit))}</pre>' if cls else f"<pre>{_e(clip(text, limit))}</pre>"


def _samples(s: StageData) -> str:
    out = []
    records = s.kept_samples + s.dropped_samples
    if records:
        cards = []
        for rec in records:
            badge = (
                '<span class="badge good">kept</span>'
                if rec.get("kept")
                else f'<span class="badge bad">dropped: {_e(rec.get("drop_reason") or "unknown")}</span>'
            )
            parts = [
                f'<div class="sample"><div>{badge} <code>{_e(rec.get("family", "?"))}</code> '
                f'<span class="muted">{_e(rec.get("key", ""))}</span></div>',
                f'<div class="who">made by: {_e(provenance_text(rec))}</div>',
            ]
            for fld in ("prompt", "chosen", "rejected"):
                if rec.get(fld):
                    parts.append(f'<div class="lbl">{fld}</div>' + _pre(rec[fld], fld if fld != "prompt" else ""))
            verdicts = verdict_text(rec)
            if verdicts:
                parts.append(f'<div class="who">verdicts: {_e(clip(verdicts, 300))}</div>')
            cards.append("".join(parts) + "</div>")
        out.append('<h4>Training records</h4><div class="samples">' + "".join(cards) + "</div>")
    if s.heldout_samples:
        cards = []
        for row in s.heldout_samples:
            ok = bool(row.get("passed"))
            badge = f'<span class="badge {"good" if ok else "bad"}">{"pass" if ok else "fail"}</span>'
            reason = f'<div class="who">{_e(clip(row["reason"], 200))}</div>' if row.get("reason") else ""
            cards.append(
                f'<div class="sample"><div>{badge} <code>{_e(row.get("family", "?"))}</code> '
                f'<span class="muted">{_e(row.get("id", ""))}</span></div>{reason}'
                f'<div class="lbl">input</div>{_pre(row.get("prompt"), "", 500)}'
                f'<div class="lbl">output</div>{_pre(row.get("output"), "", 500)}</div>'
            )
        out.append(
            f"<h4>Held-out outputs · model {_e(s.heldout_samples_model)}</h4>"
            f'<div class="samples">{"".join(cards)}</div>'
        )
    return "".join(out) or '<p class="missing">No samples (not run).</p>'


def _stage(s: StageData) -> str:
    badge = f'<span class="badge {STATE_STYLE.get(s.state, "warn")}">{_e(s.state)}</span>'
    meta = [f"kind <code>{_e(s.kind or '–')}</code>"]
    if s.heldout and s.heldout.mean is not None:
        meta.append(f"{FIGURE} <strong>{_e(score_cell(s.heldout))}</strong>")
    if s.metrics is not None:
        meta.append(f"gate {_e(gate_text(s.metrics, s.threshold))}")
    elif s.threshold is not None:
        meta.append(f"threshold {s.threshold:.0%}")
    if s.attempts is not None:
        meta.append(f"attempts {s.attempts}")
    if s.families:
        meta.append("families " + ", ".join(f"<code>{_e(f)}</code>" for f in s.families))
    parts = [f'<div class="stage-head"><h2>{_e(s.name)}</h2>{badge}</div>', f'<p class="meta">{" · ".join(meta)}</p>']
    if s.description:
        parts.append(f"<p>{_e(s.description)}</p>")
    message = (s.status or {}).get("message")
    if message:
        parts.append(f'<p class="message">{_e(message)}</p>')
    if s.state == NOT_RUN:
        parts.append('<p class="missing">This stage was not run.</p>')
    else:
        fam = family_table(s)
        if fam:
            parts.append("<h4>Held-out success per family</h4>" + html_table(fam))
        answerers = answerer_table(s)
        if answerers:
            parts.append("<h4>Who answered the first data (answerer probe)</h4>" + html_table(answerers))
        rounds = rounds_table(s)
        if rounds:
            parts.append("<h4>Rounds of self-training</h4>" + html_table(rounds))
        knowledge = knowledge_table(s)
        if knowledge:
            parts.append("<h4>Held-out success by what the base model knows</h4>" + html_table(knowledge))
        safety = safety_table(s)
        if safety:
            parts.append("<h4>Safety before / after</h4>" + html_table(safety))
            types = xstest_type_table(s)
            if types:
                parts.append("<h4>XSTest refusals by prompt type</h4>" + html_table(types))
            gate = safety_gate_lines(s)
            if gate:
                parts.append(
                    '<p class="meta">Safety gate: '
                    + "; ".join(f"{_e(k)}: <strong>{_e(v)}</strong>" for k, v in gate)
                    + "</p>"
                )
        parts.append(_samples(s))
    return f'<section class="card" id="stage-{_e(s.name)}">{"".join(parts)}</section>'


def render_html(run: RunData, plots: dict[str, Plot | str]) -> str:
    facts = "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in run_facts(run))
    warnings = run.all_warnings
    warn_html = ""
    if warnings:
        items = "".join(f"<li>{_e(w)}</li>" for w in warnings)
        warn_html = (
            f'<div class="warnings" role="alert"><strong>⚠ {len(warnings)} warning(s)</strong><ul>{items}</ul></div>'
        )
    nav = "".join(f'<a href="#{sid}">{_e(t)}</a>' for sid, t in SECTIONS)
    body = [
        f"<header><h1>Run report: {_e(run.run_id)}</h1>"
        f'<p class="sub">cai-bootstrap · curriculum {_e(run.curriculum or "–")}</p>'
        f'<div class="card"><dl class="facts">{facts}</dl></div>{warn_html}<nav>{nav}</nav></header>',
        _section("summary", "Summary", html_table(summary_table(run))),
        _section("success", "Success per stage vs threshold", _figure(plots, "success")),
        _section("families", "Success per task family", _figure(plots, "families")),
        _section(
            "retained",
            "Retained skills",
            _figure(plots, "retained") + (html_table(t) if (t := retained_table(run)) else ""),
        ),
        _section("control", "Bootstrap contribution: predecessor-made vs base-made data", _figure(plots, "control")),
        _section("training", "Training curves", _figure(plots, "training")),
        _section("yield", "Dataset yield per filter", _figure(plots, "yield") + html_table(yield_table(run), {4})),
        _section("cost", "Time and tokens per stage", _figure(plots, "cost") + html_table(cost_table(run))),
        '<div id="stages"></div>',
        *(_stage(s) for s in run.stages),
    ]
    env = html_table(versions_table(run)) if run.versions else '<p class="missing">No versions recorded.</p>'
    if run.git_commit:
        env += f'<p class="meta">git commit <code>{_e(run.git_commit)}</code></p>'
    if run.input_hashes:
        rows = "".join(
            f'<tr><td class="t"><code>{_e(k)}</code></td><td class="t"><code>{_e(v)}</code></td></tr>'
            for k, v in run.input_hashes.items()
        )
        env += (
            f"<details><summary>Input hashes ({len(run.input_hashes)} files, sha256)</summary>"
            f'<div class="scroll"><table><tbody>{rows}</tbody></table></div></details>'
        )
    body.append(_section("environment", "Environment", env))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Run report: {_e(run.run_id)}</title><style>{CSS}</style></head>"
        f"<body><main>{''.join(body)}<footer>Generated by cai-bootstrap report from {_e(run.run_dir.name)}"
        "</footer></main></body></html>\n"
    )
