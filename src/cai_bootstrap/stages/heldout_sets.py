"""A stage's held-out set inside a run: the families' held-out cases, less the facts the base
model does not know where the stage asks so (``heldout_known``).

`plan_known_heldout` probes the base model on every candidate case's fact before any stage
runs and writes ``<run>/knowledge/heldout.json`` (per stage: the unknown facts, how many of
the first cases were replaced); `stage_heldout` reads it, so every consumer (the stage's
gate, later stages' retained scores, the control) scores the same cases.
"""

from __future__ import annotations

from pathlib import Path

from cai_bootstrap.config import StageSpec
from cai_bootstrap.engines.base import Engine
from cai_bootstrap.evaluation.heldout import KNOWN_POOL_FACTOR, heldout_instances
from cai_bootstrap.evaluation.knowledge import fact_of, probe_facts
from cai_bootstrap.jsonl import atomic_write_json, read_json
from cai_bootstrap.tasks.base import Instance

PLAN_FILE = Path("knowledge") / "heldout.json"
#: the pool factor of plans written before it was recorded
OLD_POOL_FACTOR = 4
#: the base model's probe of every fact asked so far, one line per fact (shared by the plan and the reports)
PROBE_FILE = Path("knowledge") / "base.jsonl"


def stage_heldout(run_dir: Path, spec: StageSpec, seed: int) -> list[Instance]:
    """The held-out cases that score ``spec`` in this run."""
    if not spec.heldout_known:
        return heldout_instances(spec.families, spec.heldout, seed)
    plan = run_dir / PLAN_FILE
    if not plan.exists():
        raise FileNotFoundError(f"{plan}: the held-out plan of a stage with heldout_known is written "
                                "before any stage runs; resume the run to write it")
    entry = read_json(plan)[spec.name]
    return heldout_instances(spec.families, spec.heldout, seed, set(entry["unknown_facts"]),
                             entry.get("pool_factor", OLD_POOL_FACTOR))


def plan_known_heldout(run_dir: Path, stages: list[StageSpec], seed: int, base: Engine, progress: bool = True) -> dict:
    """Probe the base model on the facts of every ``heldout_known`` stage's candidate cases; write the plan."""
    plan_file = run_dir / PLAN_FILE
    plan = read_json(plan_file) if plan_file.exists() else {}
    # a plan written before the criterion was recorded used 'sampled'
    wanted = [s for s in stages if s.heldout_known
              and plan.get(s.name, {}).get("criterion", "sampled" if s.name in plan else None) != s.heldout_known]
    for spec in wanted:
        pool = [i for i in heldout_instances(spec.families, spec.heldout * KNOWN_POOL_FACTOR, seed)
                if spec.known_criterion("heldout_known", i.family)]
        probes = probe_facts(base, pool, run_dir / PROBE_FILE, seed=seed, progress=progress)
        unknown = sorted({f.id for i in pool if (f := fact_of(i))
                          and not probes[f.id].knows(spec.known_criterion("heldout_known", i.family))})
        first = heldout_instances(spec.families, spec.heldout, seed)
        chosen = {i.id for i in heldout_instances(spec.families, spec.heldout, seed, set(unknown), KNOWN_POOL_FACTOR)}
        plan[spec.name] = {
            "criterion": spec.heldout_known,
            "pool_factor": KNOWN_POOL_FACTOR,
            "unknown_facts": unknown,
            "replaced": sum(i.id not in chosen for i in first),
            "cases": len(chosen),
            "facts_probed": len({f.id for i in pool if (f := fact_of(i))}),
        }
        atomic_write_json(plan_file, plan)
    return plan
