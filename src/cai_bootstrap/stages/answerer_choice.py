"""Who answers each family in a task stage's first data: the stage's answerer or a rival model.

Why: a stage model is not a better answerer for every family than the base model. The `tasks`
stage-0 factual-QA expert, trained on answer-only records, ends its answers after a line: asked
for code (2-shot, 10 training instances x 2 samples, `benchmarks/answerer_samples.py`) it passed
none of 20 samples, 9 of them "```python" and then the end of text (the base model passed 4);
creative writing 0 of 20, poems of one or two lines (base 5). So which model makes a family's
data is measured, not assumed: the question the curriculum asks ("can each stage's model make its successor's data?")
is answered per family, in ``answerer_choice.json``.

With ``options.answerer_probe: K`` and ``roles.rival_answerer`` (e.g. ``base``), before the
first data both models answer the first K planned cases of every family (training instances,
never held-out or validation ones), ``answerer_probe_samples`` times each, prompted exactly as
the first data prompts them (few-shot where the model was not trained on the family). A family
goes to the rival only when the rival passes strictly more samples: ties keep the stage's
answerer, the curriculum's default. Critic and reviser stay the stage's roles, and rounds are
always the stage's own model. The choice is written once and read back on resume, so a
resumed stage asks the same model.
"""

from __future__ import annotations

from collections.abc import Sequence

from cai_bootstrap.config import ConfigError
from cai_bootstrap.jsonl import atomic_write_json, read_json
from cai_bootstrap.stages.context import StageContext, derive_seed
from cai_bootstrap.stages.task_prompts import TaskOptions, answer_prompt, answerer_trained_on, few_shot_for, token_cap
from cai_bootstrap.tasks.base import Instance, TaskFamily

ANSWERER = "answerer"
RIVAL = "rival_answerer"
CHOICE_FILE = "answerer_choice.json"


def check_probe(spec_name: str, opts: TaskOptions, roles: dict[str, str]) -> None:
    """A probe needs a rival to compare with (before any work starts)."""
    if opts.answerer_probe and RIVAL not in roles:
        raise ConfigError(f"stage {spec_name!r}: options.answerer_probe is {opts.answerer_probe} but roles has no "
                          f"{RIVAL} (the model to compare the answerer with, e.g. base)")


def choose_answerers(
    ctx: StageContext, opts: TaskOptions, pool: Sequence[tuple[TaskFamily, Instance]],
) -> dict[str, str]:
    """Family name -> the role that answers its first data (``answerer`` or ``rival_answerer``)."""
    families = list({f.name: f for f, _ in pool}.values())
    if not opts.answerer_probe or RIVAL not in ctx.spec.roles or ctx.role_name(ANSWERER) == ctx.role_name(RIVAL):
        return {f.name: ANSWERER for f in families}
    path = ctx.stage_dir / CHOICE_FILE
    if path.exists():
        return {name: row["role"] for name, row in read_json(path)["families"].items()}
    rows = {}
    for fam in families:
        cases = [inst for f, inst in pool if f.name == fam.name][: opts.answerer_probe]
        passed = {role: probe_passes(ctx, opts, fam, cases, role) for role in (ANSWERER, RIVAL)}
        role = RIVAL if passed[RIVAL] > passed[ANSWERER] else ANSWERER
        rows[fam.name] = {
            "role": role, "model": ctx.role_name(role), "cases": len(cases),
            "samples": len(cases) * opts.answerer_probe_samples,
            "passed": {ctx.role_name(r): n for r, n in passed.items()},
        }
    atomic_write_json(path, {
        "answerer": ctx.role_name(ANSWERER), "rival": ctx.role_name(RIVAL),
        "rule": "the rival answers a family only when it passes strictly more probe samples", "families": rows,
    })
    parts = ", ".join(f"{name} {row['model']} ({row['passed'][ctx.role_name(ANSWERER)]} vs "
                      f"{row['passed'][ctx.role_name(RIVAL)]} of {row['samples']})" for name, row in rows.items())
    ctx.console.print(f"{ctx.spec.name}: answerer per family: {parts}")
    return {name: row["role"] for name, row in rows.items()}


def probe_passes(ctx: StageContext, opts: TaskOptions, fam: TaskFamily, cases: list[Instance], role: str) -> int:
    """Verified samples of ``role``'s model on ``cases``, prompted as the first data prompts it."""
    if not cases:
        return 0
    few_shot = few_shot_for(ctx, opts, fam, answerer_trained_on(ctx, role))
    prompts = [answer_prompt(opts, fam, inst, few_shot) for inst in cases]
    params = ctx.sampling(seed=derive_seed(ctx.seed, "answerer-probe", fam.name), n=opts.answerer_probe_samples,
                          max_new_tokens=token_cap(ctx.spec, fam), top_k=opts.top_k)
    outputs = ctx.engine(role).generate(prompts, params, desc=f"{ctx.spec.name} probe {role}")
    return sum(fam.verify(inst, text).passed for inst, texts in zip(cases, outputs) for text in texts)
