"""Read a run directory into typed, tolerant objects for the report.

Inputs (see ``cai_bootstrap.runs.layout``): ``manifest.json`` (required) and, per
stage, any of ``state.json``, ``metrics.json``, ``train/**/train_log.jsonl``,
``data.jsonl``, ``eval/heldout-<model>.jsonl``. Every per-stage part is optional:
a missing part becomes ``None`` / empty and the renderers say "not run".

Output: `RunData` with one `StageData` per stage in manifest order. Nothing here
imports torch or the training stack, so reporting stays fast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cai_bootstrap.jsonl import JsonlError, iter_jsonl, read_json

#: Kept training records and held-out rows shown per stage.
N_KEPT_SAMPLES = 3
N_HELDOUT_SAMPLES = 4

#: the state of a stage whose state.json cannot be read
UNKNOWN_STATE = "unknown (state.json unreadable)"


class ReportError(ValueError):
    """The run directory cannot be reported on (no manifest, unreadable manifest)."""


def _num(value: Any) -> float | None:
    """A finite float, or None for anything else (missing, null, NaN, text)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if out == out and out not in (float("inf"), float("-inf")) else None


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


@dataclass
class FamilyScore:
    n: int
    passed: int
    rate: float
    #: failed cases by the verifier check that failed them (empty for runs from before it was counted)
    failures: dict[str, int] = field(default_factory=dict)


@dataclass
class Score:
    """One model's success on one held-out set: mean and per-family rates (0..1)."""

    model: str
    mean: float | None
    per_family: dict[str, FamilyScore] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: Any, model: str = "") -> Score | None:
        if not isinstance(raw, dict):
            return None
        fams: dict[str, FamilyScore] = {}
        for name, fam in _dict(raw.get("per_family")).items():
            fam = _dict(fam)
            n = int(_num(fam.get("n")) or 0)
            passed = int(_num(fam.get("passed")) or 0)
            rate = _num(fam.get("rate"))
            if rate is None:
                rate = passed / n if n else 0.0
            failures = {str(k): int(_num(v) or 0) for k, v in _dict(fam.get("failures")).items()}
            fams[str(name)] = FamilyScore(n=n, passed=passed, rate=rate, failures=failures)
        mean = _num(raw.get("mean"))
        if mean is None and fams:
            total = sum(f.n for f in fams.values())
            mean = sum(f.passed for f in fams.values()) / total if total else None
        return cls(model=str(raw.get("model") or model), mean=mean, per_family=fams)


@dataclass
class DataYield:
    generated: int
    kept: int
    by_filter: dict[str, int]


@dataclass
class StageData:
    name: str
    kind: str = ""
    description: str = ""
    families: list[str] = field(default_factory=list)
    threshold: float | None = None
    #: state.json content (None when the stage never started).
    status: dict | None = None
    #: metrics.json content as written (None when the stage has no metrics yet).
    metrics: dict | None = None
    heldout: Score | None = None
    base_heldout: Score | None = None
    control: Score | None = None
    retained: dict[str, Score] = field(default_factory=dict)
    data: DataYield | None = None
    #: train_log.jsonl rows of the latest attempt, and that attempt's label.
    train_log: list[dict] = field(default_factory=list)
    train_log_source: str = ""
    kept_samples: list[dict] = field(default_factory=list)
    dropped_samples: list[dict] = field(default_factory=list)
    heldout_samples: list[dict] = field(default_factory=list)
    heldout_samples_model: str = ""
    #: XSTest per prompt type of the model before the stage and of the installed one
    #: (``{"before" | "after": {type: {n, string_refusal_rate, judge_refusal_rate}}}``, numbers or None).
    xstest_types: dict[str, dict] = field(default_factory=dict)
    #: answerer_choice.json (task stages with an answerer probe): who answered each family's first data.
    answerer_choice: dict | None = None
    #: Problems met while reading this stage (shown in the report, never raised).
    problems: list[str] = field(default_factory=list)

    @property
    def state(self) -> str:
        """pending | generating | training | evaluating | passed | failed | continued | not run | unknown."""
        if self.status and self.status.get("state"):
            return str(self.status["state"])
        if any(p.startswith(("unreadable state.json", "state.json is not")) for p in self.problems):
            return UNKNOWN_STATE  # not "failed" from an old metrics.json: nobody knows where it stopped
        if self.metrics is not None:
            return "passed" if self.metrics.get("passed") else "failed"
        return "not run"

    @property
    def ran(self) -> bool:
        return self.metrics is not None

    @property
    def passed(self) -> bool | None:
        if self.metrics is None or "passed" not in self.metrics:
            return None
        return bool(self.metrics["passed"])

    @property
    def attempts(self) -> int | None:
        if self.metrics and _num(self.metrics.get("attempts")) is not None:
            return int(self.metrics["attempts"])
        if self.status and _num(self.status.get("attempt")) is not None:
            return int(self.status["attempt"]) + 1
        return None

    @property
    def timings(self) -> dict[str, float]:
        raw = _dict((self.metrics or {}).get("timings")) or _dict((self.status or {}).get("timings"))
        return {k: v for k, v in ((k, _num(v)) for k, v in raw.items()) if v is not None}

    @property
    def tokens(self) -> dict[str, float]:
        raw = _dict((self.metrics or {}).get("tokens"))
        return {k: v for k, v in ((k, _num(v)) for k, v in raw.items()) if v is not None}

    @property
    def training(self) -> dict:
        return _dict((self.metrics or {}).get("training"))

    @property
    def safety(self) -> dict | None:
        raw = (self.metrics or {}).get("safety")
        return raw if isinstance(raw, dict) and raw else None


@dataclass
class RunData:
    run_dir: Path
    run_id: str
    created: str
    settings: dict
    curriculum: str
    versions: dict[str, str]
    git_commit: str | None
    input_hashes: dict[str, str]
    warnings: list[str]
    stages: list[StageData]

    def stage(self, name: str) -> StageData | None:
        return next((s for s in self.stages if s.name == name), None)

    @property
    def all_warnings(self) -> list[str]:
        """Manifest warnings, then gates that failed (stopped or continued), then read problems."""
        out = list(self.warnings)
        for s in self.stages:
            # the runner already wrote a manifest warning for a continued gate: say it once
            recorded = any("GATE FAILED" in w and s.name in w for w in self.warnings)
            if s.state == "continued" and not recorded:
                out.append(f"{s.name}: gate failed and the run continued. {_gate_detail(s)}".strip())
            elif s.state == "failed":
                out.append(f"{s.name}: gate failed; the run stopped here. {_gate_detail(s)}".strip())
            out.extend(f"{s.name}: {p}" for p in s.problems)
        return out


def _gate_detail(s: StageData) -> str:
    msg = str((s.status or {}).get("message") or "")
    if msg:
        return msg
    if s.heldout and s.heldout.mean is not None and s.threshold is not None:
        return f"Held-out success {s.heldout.mean:.1%} vs threshold {s.threshold:.0%}."
    return ""


def _read_json_optional(path: Path, problems: list[str]) -> dict | None:
    if not path.exists():
        return None
    try:
        obj = read_json(path)
    except (JsonlError, OSError, UnicodeDecodeError) as exc:
        problems.append(f"unreadable {path.name}: {exc}")
        return None
    if not isinstance(obj, dict):
        problems.append(f"{path.name} is not a JSON object")
        return None
    return obj


def _attempt_no(path: Path, pattern: str = r"attempt-(\d+)") -> int:
    """The attempt a file belongs to (``train/attempt-<k>/...``; with ``_EVAL_ATTEMPT``,
    ``eval/heldout-<stage>-a<k>.jsonl``), -1 when the path names none."""
    m = re.search(pattern, str(path))
    return int(m.group(1)) if m else -1


_EVAL_ATTEMPT = r"-a(\d+)\.jsonl$"


def _load_train_log(stage_dir: Path, problems: list[str], selected: int | None = None) -> tuple[list[dict], str]:
    """Rows of the installed attempt's ``train_log.jsonl`` (``train/attempt-<k>/`` or ``train/``):
    the ``selected`` one when the runner kept an earlier attempt, else the latest."""
    logs = sorted((stage_dir / "train").rglob("train_log.jsonl"), key=lambda p: (_attempt_no(p), str(p)))
    if selected is not None:
        logs = [p for p in logs if _attempt_no(p) == selected] or logs
    if not logs:
        return [], ""
    path = logs[-1]
    try:
        rows = [r for r in iter_jsonl(path) if _num(r.get("loss")) is not None or "rewards/margins" in r]
    except (JsonlError, OSError) as exc:
        problems.append(f"unreadable train log: {exc}")
        return [], ""
    return rows, str(path.relative_to(stage_dir))


def _load_data(
    stage_dir: Path, need_yield: bool, problems: list[str]
) -> tuple[list[dict], list[dict], DataYield | None]:
    """A few kept records (one family after another) and one dropped; the yield if asked."""
    path = stage_dir / "data.jsonl"
    if not path.exists():
        return [], [], None
    by_family: dict[str, list[dict]] = {}
    dropped: list[dict] = []
    generated = kept = 0
    by_filter: dict[str, int] = {}
    try:
        for rec in iter_jsonl(path):
            generated += 1
            if rec.get("kept"):
                kept += 1
                fam = by_family.setdefault(str(rec.get("family", "")), [])
                if len(fam) < N_KEPT_SAMPLES:
                    fam.append(rec)
            else:
                reason = str(rec.get("drop_reason") or "dropped")
                by_filter[reason] = by_filter.get(reason, 0) + 1
                if not dropped:
                    dropped.append(rec)
            if not need_yield and len(dropped) >= 1 and sum(map(len, by_family.values())) >= 4 * N_KEPT_SAMPLES:
                break
    except (JsonlError, OSError) as exc:
        problems.append(f"unreadable data.jsonl: {exc}")
    # Round-robin over families so every family gets a sample before any gets two.
    samples: list[dict] = []
    queues = [list(v) for v in by_family.values()]
    while len(samples) < N_KEPT_SAMPLES and any(queues):
        for q in queues:
            if q and len(samples) < N_KEPT_SAMPLES:
                samples.append(q.pop(0))
    data = DataYield(generated, kept, by_filter) if need_yield else None
    return samples, dropped, data


def _load_heldout_rows(stage_dir: Path, stage: str, problems: list[str], attempt: int | None = None) -> tuple[list[dict], str]:
    """Up to N held-out rows of the stage model (of its installed ``attempt``), failures and
    passes both shown."""
    eval_dir = stage_dir / "eval"
    candidates = [eval_dir / f"heldout-{stage}-a{attempt}.jsonl"] if attempt is not None else []
    candidates.append(eval_dir / f"heldout-{stage}.jsonl")
    path = next((p for p in candidates if p.exists()), None)
    if path is None:
        others = sorted(eval_dir.glob(f"heldout-{stage}-a*.jsonl"), key=lambda p: _attempt_no(p, _EVAL_ATTEMPT))
        path = others[-1] if others else (eval_dir / "heldout-base.jsonl")
    if not path.exists():
        return [], ""
    passed: list[dict] = []
    failed: list[dict] = []
    half = N_HELDOUT_SAMPLES // 2
    try:
        for row in iter_jsonl(path):
            bucket = passed if row.get("passed") else failed
            if len(bucket) < N_HELDOUT_SAMPLES:
                bucket.append(row)
            if len(passed) >= N_HELDOUT_SAMPLES and len(failed) >= N_HELDOUT_SAMPLES:
                break
    except (JsonlError, OSError) as exc:
        problems.append(f"unreadable {path.name}: {exc}")
    n_fail = min(len(failed), max(half, N_HELDOUT_SAMPLES - len(passed)))
    rows = failed[:n_fail] + passed[: N_HELDOUT_SAMPLES - n_fail]
    return rows, path.stem.removeprefix("heldout-")


def _load_data_yield(raw: Any) -> DataYield | None:
    if not isinstance(raw, dict) or _num(raw.get("generated")) is None:
        return None
    by_filter = {str(k): int(_num(v) or 0) for k, v in _dict(raw.get("by_filter")).items()}
    return DataYield(int(_num(raw["generated"]) or 0), int(_num(raw.get("kept")) or 0), by_filter)


def load_stage(run_dir: Path, spec: dict) -> StageData:
    name = str(spec["name"])
    stage_dir = run_dir / name
    problems: list[str] = []
    status = _read_json_optional(stage_dir / "state.json", problems)
    metrics = _read_json_optional(stage_dir / "metrics.json", problems)
    m = metrics or {}
    threshold = _num(m.get("threshold"))
    if threshold is None:
        threshold = _num(spec.get("threshold"))
    if spec.get("safety_gate") or m.get("safety"):
        threshold = None  # gated by "safety up, capability kept" (its own table), not a held-out share
    stage = StageData(
        name=name,
        kind=str(m.get("kind") or spec.get("kind") or ""),
        description=str(spec.get("description") or ""),
        families=[str(f) for f in spec.get("families") or []],
        threshold=threshold,
        status=status,
        metrics=metrics,
        heldout=Score.parse(m.get("heldout"), name),
        base_heldout=Score.parse(m.get("base_heldout"), "base"),
        control=Score.parse(_dict(m.get("control")).get("heldout"), "control"),
        retained={str(k): s for k, v in _dict(m.get("retained")).items() if (s := Score.parse(v, name)) is not None},
        data=_load_data_yield(m.get("data")),
        answerer_choice=_read_json_optional(stage_dir / "answerer_choice.json", problems),
        problems=problems,
    )
    selected = _num(m.get("selected_attempt"))
    stage.train_log, stage.train_log_source = _load_train_log(
        stage_dir, problems, int(selected) if selected is not None else None
    )
    stage.kept_samples, stage.dropped_samples, counted = _load_data(stage_dir, stage.data is None, problems)
    if stage.data is None:
        stage.data = counted
    installed = int(selected) if selected is not None else (stage.attempts - 1 if stage.attempts else None)
    stage.heldout_samples, stage.heldout_samples_model = _load_heldout_rows(stage_dir, name, problems, installed)
    if stage.safety:
        stage.xstest_types = _load_xstest_types(stage_dir / "eval" / "benchmarks", name, installed, problems)
    return stage


def _load_xstest_types(bench_dir: Path, stage: str, installed: int | None, problems: list[str]) -> dict[str, dict]:
    """The XSTest breakdown by prompt type (``xstest.json``) of the previous model (its own
    label) and of the stage's installed attempt (``<stage>-a<N>``), where they were saved."""
    out: dict[str, dict] = {}
    for path in sorted(bench_dir.glob("*/xstest.json")):
        label = path.parent.name
        side = "before" if not label.startswith(f"{stage}-a") else "after" if label == f"{stage}-a{installed}" else None
        if side is None:
            continue
        raw = _read_json_optional(path, problems)
        breakdown = _dict((raw or {}).get("breakdown"))
        if breakdown:  # numbers as finite floats or None, like every other figure read here
            out[side] = {str(k): {key: _num(x) for key, x in _dict(v).items()} for k, v in breakdown.items()}
    return out


def load_run(run_dir: str | Path) -> RunData:
    """Read ``run_dir`` (manifest required; all else optional)."""
    run_dir = Path(run_dir)
    manifest_path = run_dir / "manifest.json"
    if not manifest_path.exists():
        raise ReportError(f"{run_dir}: no manifest.json; is this a run directory?")
    try:
        manifest = read_json(manifest_path)
    except JsonlError as exc:
        raise ReportError(str(exc)) from None
    if not isinstance(manifest, dict):
        raise ReportError(f"{manifest_path}: not a JSON object")
    settings = _dict(manifest.get("settings"))
    curriculum = _dict(manifest.get("curriculum"))
    specs = {str(s.get("name")): s for s in curriculum.get("stages") or [] if isinstance(s, dict) and s.get("name")}
    order = [str(s) for s in manifest.get("stages") or []] or list(specs)
    stages = [load_stage(run_dir, specs.get(name, {"name": name})) for name in order]
    return RunData(
        run_dir=run_dir,
        run_id=str(manifest.get("run_id") or run_dir.name),
        created=str(manifest.get("created") or ""),
        settings=settings,
        curriculum=str(curriculum.get("name") or settings.get("curriculum") or ""),
        versions={str(k): str(v) for k, v in _dict(manifest.get("versions")).items()},
        git_commit=manifest.get("git_commit"),
        input_hashes={str(k): str(v) for k, v in _dict(manifest.get("input_hashes")).items()},
        warnings=[str(w) for w in manifest.get("warnings") or []],
        stages=stages,
    )
