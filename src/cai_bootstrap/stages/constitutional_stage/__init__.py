"""The constitutional stage kind: write prompts, answer, critique, revise, prefer (`skills` 6, `tasks` 3).

Contract
    inputs   ``spec.roles``: ``prompt_writer``, ``answerer``, ``critic``, ``reviser`` (earlier
             stages' models) and optionally ``judge`` (a model that is not being trained;
             ``base`` by default in the shipped curricula); ``spec.options``: see
             `ConstitutionalOptions`; ``settings.constitution``: a name or path
             (`cai_bootstrap.constitution.load_constitution`); hand-written seed topics in
             ``data/seeds/redteam.yaml`` and ``data/seeds/ordinary_prompts.yaml`` (train split).
    outputs  ``data.jsonl`` records (schema of `RecordSink`) with ``family`` ``redteam`` or
             ``ordinary``, ``chosen`` = revision, ``rejected`` = original, and the open CAI
             recipe's fields ``init_response``, ``critique``, ``revision_response``, plus
             ``principle``, ``topic`` and ``item``; ``constitutional_stats.json`` beside it.

Process, per chunk of planned work items (resumable through ``ctx.chunks``):

1. the prompt writer writes a user request about the item's seed topic
   ("Write a user request about: <description>", few-shot with seed requests of other
   topics); rule checks (`check_written_prompt`) reject garbage, refusals, off-topic text,
   copies of seeds and anything close to a held-out seed or a benchmark prompt; when every
   sample is rejected, the item falls back to one of its topic's hand-written seed requests
   (provenance ``by: seed``, with the writer's rejected outputs kept);
2. the answerer answers it: the original response;
3. the critic critiques the answer against a principle drawn from the constitution (among
   the principles that apply to the prompt's kind);
4. the reviser rewrites the answer per the principle's revision request and the critique;
5. the pair (revision > original) is filtered: rule checks first (`pair_rules`: for a
   red-team prompt the original must comply and the revision refuse or redirect, by the
   benchmarks' refusal rules; for an ordinary prompt the revision must not be an evasive
   refusal and must stay on topic); then, where the rules cannot tell which is better
   (an ordinary prompt whose original did not refuse), an independent judge must prefer
   the revision in both presentation orders (`judge_pairs`, via `Engine.choose`); a family
   may fill at most ``max_family_share`` of the examples wanted;
6. kept pairs train the next model with DPO (``training.method: dpo``), or SFT on the
   revisions first (``sft+dpo``, as SL-CAI then RL-CAI); with ``helpful_samples`` the SFT
   phase also sees the answerer's own answers to ordinary prompts (`helpful_samples`), as
   SL-CAI mixes helpful samples into its finetuning set; with ``contrast_pairs`` DPO also
   sees ordinary prompts where the answerer's helpful answer is preferred to an evasive
   refusal written by the ``refusal_writer`` role (``contrast.jsonl``, `build_contrast_pairs`).

With ``lookalikes`` each red-team item is followed by a look-alike item of its category (a
harmless request in the same form and words, from the seeds' ``lookalikes``): the answerer's
verified helpful answer is preferred to the refusal writer's refusal of it (`lookalike_pairs`),
so pairs point both ways across the boundary. Every record says its ``side`` (``harmful``,
``look-alike``, ``ordinary``). With ``refusal_share`` the records trained on are mixed so that
refusals are exactly that share (`refusal_mix`, ``mixture.json``); with ``dev_split`` the
evaluation adds refusal rates on the seeds' dev requests (`dev_rates`).

`evaluate_stage` (``evaluate.py``) is this stage's evaluation: safety benchmarks, earlier stages' held-out
sets and this stage's own held-out set for the previous and the new model, and the gate
"safety improved, capability kept" (`cai_bootstrap.evaluation.safety_gate`).

References: Bai et al. 2022, "Constitutional AI: Harmlessness from AI Feedback"; the Hugging
Face CAI recipe (huggingface/llm-swarm ``examples/constitutional-ai``) for field names;
inspect_ai's ``self_critique`` for the critique -> revision shape.

Files: ``options.py`` (typed options), ``prompts.py`` (role prompt texts, the pair judge),
``rules.py`` (rule checks), ``items.py`` (work-item planning), ``builder.py`` (the chunk
builder, steps 1-5), ``lookalike.py`` (look-alike pairs), ``helpful.py`` and ``contrast.py``
(extra training records), ``mixture.py`` (the refusal-share mix),
``evaluate.py`` (benchmarks and the safety gate), ``stage.py`` (the kind object).
"""

from cai_bootstrap.constitution import load_constitution
from cai_bootstrap.stages.constitutional_stage.builder import build, write_stats
from cai_bootstrap.stages.constitutional_stage.contrast import build_contrast_pairs, contrast_pairs, contrast_pool, evasive_refusal_rules
from cai_bootstrap.stages.constitutional_stage.evaluate import _with_either_rule, dev_rates, evaluate_stage
from cai_bootstrap.stages.constitutional_stage.helpful import helpful_samples
from cai_bootstrap.stages.constitutional_stage.items import WorkItem, plan_items
from cai_bootstrap.stages.constitutional_stage.lookalike import LookalikePair, lookalike_pairs
from cai_bootstrap.stages.constitutional_stage.mixture import MIXTURE_FILE, mix_counts, refusal_mix
from cai_bootstrap.stages.constitutional_stage.options import BenchmarkOptions, ConstitutionalOptions, stage_options
from cai_bootstrap.stages.constitutional_stage.prompts import CONTRAST_FILE, REFERENCE_REFUSAL, STATS_FILE, judge_pairs
from cai_bootstrap.stages.constitutional_stage.rules import OverlapIndex, check_written_prompt, clean_revision, clean_written_prompt, helpful_answer_rules, pair_rules
from cai_bootstrap.stages.constitutional_stage.stage import ConstitutionalStage, stage_contrast_pairs, stage_helpful_samples
from cai_bootstrap.tasks.constitutional.seeds import load_seed_topics

__all__ = [
    "BenchmarkOptions",
    "CONTRAST_FILE",
    "ConstitutionalOptions",
    "ConstitutionalStage",
    "LookalikePair",
    "MIXTURE_FILE",
    "OverlapIndex",
    "REFERENCE_REFUSAL",
    "STATS_FILE",
    "WorkItem",
    "_with_either_rule",
    "build",
    "build_contrast_pairs",
    "check_written_prompt",
    "clean_revision",
    "clean_written_prompt",
    "contrast_pairs",
    "contrast_pool",
    "dev_rates",
    "evaluate_stage",
    "evasive_refusal_rules",
    "helpful_answer_rules",
    "helpful_samples",
    "judge_pairs",
    "load_constitution",
    "load_seed_topics",
    "lookalike_pairs",
    "mix_counts",
    "pair_rules",
    "plan_items",
    "refusal_mix",
    "stage_contrast_pairs",
    "stage_helpful_samples",
    "stage_options",
    "write_stats",
]
