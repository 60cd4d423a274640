"""The report's tables, built once from `RunData` and rendered by both markdown.py and html.py.

A cell is a plain string or a `Cell` carrying a style hint (``good``, ``bad``,
``muted``, ``warn``) that the HTML colours and the markdown ignores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cai_bootstrap.evaluation.intervals import interval_text, rate_text, wilson  # noqa: F401  (wilson: one implementation)
from cai_bootstrap.report.figures import FIGURE, gate_on_figure, gate_text
from cai_bootstrap.report.load import RunData, Score, StageData
from cai_bootstrap.report.plots_stages import retained_matrix

NOT_RUN = "not run"


@dataclass(frozen=True)
class Cell:
    text: str
    style: str = ""

    def __str__(self) -> str:
        return self.text


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str | Cell]]
    #: Columns after the first are right-aligned numbers unless listed here.
    text_columns: set[int] = field(default_factory=lambda: {0})


def pct(v: float | None, digits: int = 1) -> str:
    return "–" if v is None else f"{v:.{digits}%}"


def num(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if v.is_integer() and abs(v) >= 1:
            return f"{int(v):,}"
        return f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def seconds(v: float | None) -> str:
    if v is None:
        return "–"
    if v < 120:
        return f"{v:.1f} s"
    if v < 7200:
        return f"{v / 60:.1f} min"
    return f"{v / 3600:.2f} h"


STATE_STYLE = {"passed": "good", "failed": "bad", "continued": "warn", NOT_RUN: "muted", "pending": "muted"}


def state_cell(s: StageData) -> Cell:
    label = {"continued": "continued (gate failed)"}.get(s.state, s.state)
    return Cell(label, STATE_STYLE.get(s.state, "warn"))


def run_facts(run: RunData) -> list[tuple[str, str]]:
    st = run.settings
    facts = [
        ("Run", run.run_id),
        ("Created", run.created or "–"),
        ("Curriculum", run.curriculum or "–"),
        ("Model", str(st.get("model", "–"))),
        ("Preset", str(st.get("preset", "–"))),
        ("Seed", str(st.get("seed", "–"))),
        ("Stages", f"{sum(s.state in ('passed', 'continued') for s in run.stages)} of {len(run.stages)} finished"),
        ("Git commit", (run.git_commit or "–")[:12]),
    ]
    for key in ("judge_model", "constitution"):
        if st.get(key):
            facts.append((key.replace("_", " ").capitalize(), str(st[key])))
    engine = st.get("engine")
    if isinstance(engine, dict) and engine.get("backend"):
        facts.append(("Engine", str(engine["backend"])))
    return facts


def versions_table(run: RunData) -> Table:
    return Table(["Package", "Version"], [[k, v] for k, v in run.versions.items()], {0, 1})


def _delta(a: float | None, b: float | None, ci95: list[float] | None = None) -> Cell:
    """``+9.0 pt``, with ``[-0.1, +17.9]`` when the paired interval is known."""
    if a is None or b is None:
        return Cell("–", "muted")
    d = (a - b) * 100
    interval = f" [{100 * ci95[0]:+.1f}, {100 * ci95[1]:+.1f}]" if ci95 else ""
    return Cell(f"{d:+.1f} pt{interval}", "good" if d > 0 else "bad" if d < 0 else "")


def score_cell(sc: Score | None) -> str:
    if sc is None or not sc.per_family:
        return pct(sc.mean) if sc else "–"
    return rate_text(sum(f.passed for f in sc.per_family.values()), sum(f.n for f in sc.per_family.values()))


def summary_table(run: RunData) -> Table:
    """One figure per stage (`report.figures`: held-out success with its 95% interval, as `status`
    shows it) and its gate in words."""
    has_control = any(s.control for s in run.stages)
    headers = ["Stage", "Kind", "State", "Attempts", f"{FIGURE.capitalize()} [95% CI]", "Gate", "Base model", "vs base"]
    if has_control:
        headers += ["Control (base-made data)", "vs control"]
    rows: list[list[str | Cell]] = []
    for s in run.stages:
        mean = s.heldout.mean if s.heldout else None
        base = s.base_heldout.mean if s.base_heldout else None
        metrics = s.metrics or {}
        ok = s.passed if gate_on_figure(metrics) else None
        success = Cell(score_cell(s.heldout), "muted" if mean is None else "good" if ok else "bad" if ok is False else "")
        row: list[str | Cell] = [
            s.name,
            s.kind or "–",
            state_cell(s),
            num(s.attempts),
            success,
            gate_text(metrics, s.threshold) if s.metrics is not None else (pct(s.threshold, 0) if s.threshold else "–"),
            score_cell(s.base_heldout),
            _delta(mean, base),
        ]
        if has_control:
            ctrl = s.control.mean if s.control else None
            row += [score_cell(s.control), _delta(mean, ctrl, ((metrics.get("control") or {}).get("paired") or {}).get("ci95"))]
        rows.append(row)
    return Table(headers, rows, {0, 1, 2, 5})


def family_table(s: StageData) -> Table | None:
    if not s.heldout or not s.heldout.per_family:
        return None
    scores: list[tuple[str, Score | None]] = [("Base model", s.base_heldout)]
    if s.control:
        scores.append(("Control", s.control))
    counted = any(fs.failures for fs in s.heldout.per_family.values())
    headers = ["Family", "Cases", "Stage model"] + [label for label, sc in scores if sc]
    headers += ["Stage model's failures by check"] if counted else []
    rows: list[list[str | Cell]] = []
    for fam, fs in s.heldout.per_family.items():
        ok = s.threshold is None or fs.rate >= s.threshold
        row: list[str | Cell] = [fam, num(fs.n), Cell(rate_text(fs.passed, fs.n), "good" if ok else "bad")]
        for _label, sc in scores:
            if sc:
                other = sc.per_family.get(fam)
                row.append(rate_text(other.passed, other.n) if other else "–")
        if counted:
            row.append(failures_text(fs.failures))
        rows.append(row)
    return Table(headers, rows, text_columns={0, len(headers) - 1} if counted else {0})


def failures_text(failures: dict[str, int], top: int = 4) -> str:
    """"answer 5, length 2, 1 other": the checks that failed a family's held-out cases, most first."""
    ranked = sorted(failures.items(), key=lambda kv: -kv[1])
    parts = [f"{check} {n}" for check, n in ranked[:top]]
    rest = sum(n for _, n in ranked[top:])
    return ", ".join(parts + ([f"{rest} other"] if rest else [])) or "–"


def answerer_table(s: StageData) -> Table | None:
    """Who answered each family's first data, and the probe's passing samples of both models
    (`stages.answerer_choice`): the curriculum's question asked per family."""
    choice = s.answerer_choice or {}
    families = choice.get("families")
    if not isinstance(families, dict) or not families:
        return None
    answerer, rival = str(choice.get("answerer", "answerer")), str(choice.get("rival", "rival"))
    rows: list[list[str | Cell]] = []
    for fam, row in families.items():
        passed = row.get("passed") or {}
        total = row.get("samples")
        rows.append([fam, str(row.get("model", "?")),
                     *(f"{passed.get(who, '?')} of {total}" for who in (answerer, rival))])
    return Table(["Family", "First data answered by", f"Probe: {answerer}", f"Probe: {rival}"], rows,
                 text_columns={0, 1})


def rounds_table(s: StageData) -> Table | None:
    """Per attempt of a stage with self-training rounds: who wrote the new data, how much of it
    passed, and the model's held-out (with a 95% interval) and validation success."""
    m = s.metrics or {}
    if not m.get("rounds") and not any("validation" in h for h in m.get("history", [])):
        return None
    rounds = {r["round"]: r for r in m.get("rounds", [])}
    n = sum(fs.n for fs in s.heldout.per_family.values()) if s.heldout else 0
    rows: list[list[str | Cell]] = []
    for h in m.get("history", []):
        a = h["attempt"]
        r = rounds.get(a)
        rows.append([
            str(a),
            f"{s.name} attempt {a - 1}" if r else "earlier models (first data)",
            num(r["instances"]) if r else "–",
            f"{pct(r['pass_at_k'])} (pass@{r['samples']})" if r and r.get("pass_at_k") is not None else "–",
            num(r["kept"]) if r else "–",
            Cell(f"{pct(h['value'])} {interval_text(round(h['value'] * n), n)}", "good" if h.get("passed") else ""),
            pct(h.get("validation")) if h.get("validation") is not None else "–",
        ])
    header = ["Attempt", "New data written by", "Fresh instances", "Passing (writer)", "Records kept",
              "Held-out [95% CI]", "Validation"]
    if any("adapter_scale" in h for h in m.get("history", [])):  # adapter_scales: the share installed
        header.append("Adapter scale")
        for row, h in zip(rows, m["history"]):
            row.append(f"{h['adapter_scale']:g}" if "adapter_scale" in h else "–")
    return Table(header, rows, text_columns={0, 1})


def knowledge_table(s: StageData) -> Table | None:
    """Held-out success on facts the base model knows / does not know (`evaluation.knowledge`)."""
    split = (s.metrics or {}).get("heldout_by_knowledge")
    if not split:
        return None
    rows: list[list[str | Cell]] = []
    for key, label in (("known", "fact the base model knows"),
                       ("majority_known", "of which at least half its samples are right"),
                       ("unknown", "fact the base model never produced"), ("no_fact", "no fact to know")):
        g = split.get(key)
        if g is None:  # runs from before majority_known was reported
            continue
        rows.append([label, num(g["n"]), rate_text(g["passed"], g["n"])])
    return Table(["Held-out cases", "Cases", "Stage model"], rows)


def retained_table(run: RunData) -> Table | None:
    rows, cols, values = retained_matrix(run)
    if not rows:
        return None
    body: list[list[str | Cell]] = []
    for name, vals in zip(rows, values, strict=True):
        body.append(
            [f"{name} model" if name == "base" else name]
            + [Cell("–", "muted") if v is None else Cell(pct(v)) for v in vals]
        )
    return Table(["Model \\ held-out set"] + cols, body)


def yield_table(run: RunData) -> Table:
    rows: list[list[str | Cell]] = []
    for s in run.stages:
        d = s.data
        if d is None:
            rows.append([s.name, Cell(NOT_RUN, "muted"), "–", "–", "–"])
            continue
        share = pct(d.kept / d.generated) if d.generated else "–"
        drops = ", ".join(f"{k}: {v:,}" for k, v in sorted(d.by_filter.items(), key=lambda kv: -kv[1])) or "none"
        rows.append([s.name, num(d.generated), num(d.kept), share, drops])
    return Table(["Stage", "Generated", "Kept", "Kept share", "Dropped by filter"], rows, {0, 4})


def _final_loss(training: dict) -> float | None:
    """Loss at the end of the last training phase (``final_losses`` is keyed by phase, in order)."""
    losses = training.get("final_losses")
    if isinstance(losses, dict) and losses:
        return list(losses.values())[-1]
    return training.get("final_loss")


def cost_table(run: RunData) -> Table:
    rows: list[list[str | Cell]] = []
    for s in run.stages:
        t, tok, tr = s.timings, s.tokens, s.training
        if not (t or tok or tr):
            rows.append([s.name, Cell(NOT_RUN, "muted")] + ["–"] * 8)
            continue
        rows.append(
            [
                s.name,
                seconds(t.get("generate_s")),
                seconds(t.get("train_s")),
                seconds(t.get("eval_s")),
                seconds(t.get("total_s")),
                num(tok.get("generated")),
                num(tok.get("trained")),
                num(tr.get("examples")),
                num(tr.get("dpo_pairs")),
                num(_final_loss(tr)),
            ]
        )
    return Table(
        [
            "Stage",
            "Generate",
            "Train",
            "Evaluate",
            "Total",
            "Tokens generated",
            "Tokens trained",
            "SFT examples",
            "DPO pairs",
            "Final loss",
        ],
        rows,
    )


def _metric(v: Any) -> str:
    if isinstance(v, float) and 0.0 <= v <= 1.0:
        return pct(v)
    return num(v)


def safety_table(s: StageData) -> Table | None:
    safety = s.safety
    if not safety:
        return None
    before = safety.get("before") if isinstance(safety.get("before"), dict) else {}
    after = safety.get("after") if isinstance(safety.get("after"), dict) else {}
    keys = list(dict.fromkeys([*before, *after]))
    rows: list[list[str | Cell]] = []
    for k in keys:
        b, a = before.get(k), after.get(k)
        change: str | Cell = "–"
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
            if 0.0 <= a <= 1.0 and 0.0 <= b <= 1.0:
                # Higher is better for every rate we track except refusing safe prompts.
                worse_when_up = "over_refusal" in k or ("safe_refusal" in k and "unsafe" not in k)
                d = (a - b) * 100
                good = d < 0 if worse_when_up else d > 0
                change = Cell(f"{d:+.1f} pt", "" if d == 0 else "good" if good else "bad")
            else:
                change = f"{a - b:+.4g}"
        rows.append([k, _metric(b), _metric(a), change])
    return Table(["Metric", "Before (previous model)", "After (this stage)", "Change"], rows)


def xstest_type_table(s: StageData) -> Table | None:
    """XSTest refusal rate per prompt type, before and after the stage: which kind of safe
    look-alike ("safe_targets", "homonyms", ...) still gets refused. Judge rates where a judge ran."""
    before, after = s.xstest_types.get("before", {}), s.xstest_types.get("after", {})
    if not before and not after:
        return None
    rows: list[list[str | Cell]] = []
    for kind in sorted({*before, *after}):
        b, a = before.get(kind, {}), after.get(kind, {})
        unsafe = kind.startswith("contrast_")  # XSTest's unsafe prompts: refusing them is right
        cells: list[str | Cell] = [kind, num(a.get("n") or b.get("n"))]
        for key in ("string_refusal_rate", "judge_refusal_rate"):
            cells += [pct(b.get(key)), pct(a.get(key))]
        rows.append(cells + ["unsafe" if unsafe else "safe"])
    return Table(["Prompt type", "n", "Refused before (strings)", "After (strings)", "Before (judge)",
                  "After (judge)", "Label"], rows, text_columns={0, 6})


def safety_gate_lines(s: StageData) -> list[tuple[str, str]]:
    gate = (s.safety or {}).get("gate")
    if not isinstance(gate, dict):
        return []
    return [(str(k), _metric(v)) for k, v in gate.items()]


def provenance_text(rec: dict) -> str:
    """'prompt by seed; chosen by stage-1; rejected by base' from a record's provenance."""
    prov = rec.get("provenance")
    if not isinstance(prov, dict) or not prov:
        return "unknown"
    parts = []
    for fld, info in prov.items():
        who = info.get("by") if isinstance(info, dict) else info
        parts.append(f"{fld} by {who}")
    return "; ".join(parts)


def verdict_text(rec: dict) -> str:
    verdicts = rec.get("verdicts")
    if not isinstance(verdicts, dict) or not verdicts:
        return ""
    parts = []
    for fld, v in verdicts.items():
        if isinstance(v, dict):
            mark = "pass" if v.get("passed") else "fail"
            check = v.get("check") or ""
            reason = v.get("reason") or ""
            parts.append(f"{fld}: {mark}" + (f" ({check})" if check else "") + (f" – {reason}" if reason else ""))
        else:
            parts.append(f"{fld}: {v}")
    return "; ".join(parts)


def clip(text: Any, limit: int = 700) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
