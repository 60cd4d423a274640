"""The measured figures `cai_bootstrap.plan` counts with, each with the run it was measured in.

All on the 2-core development CPU with the embedded gemma-3-270m. Data figures (yields, record
tokens, round keep shares) hold on every hardware profile; the pipeline's shares of bench's rates
(`GEN_SHARE`, `TRAIN_SHARE`, `KIND_SHARES`) and `RUN_OVERHEAD_S` only where the rates are bench's
(the ``cpu`` profile and ``--bench``).
"""

from __future__ import annotations

# ---- bench and the skills curriculum (runs/skills-std1)
#: ``cai-bootstrap bench --quick``, 2026-12-04 (docs/performance.md), the day before runs/skills-std1:
#: generation 287 tok/s (batch 128), LoRA SFT 204 tok/s (8 x ~128 tokens), DPO 0.553 pairs/s = 0.553 x
#: 2 x 128 tok/s. Plan times divide by these x the shares below, so a bench of another machine
#: (``--bench`` or the per-machine cache) keeps the pipeline's shares.
CPU_BENCH = (287.0, 204.0, 0.553 * 2 * 128)
#: Fitted to runs/skills-std1 (standard preset as it ran: 3 epochs, 3 rounds; stages 1-5 in 7,563 s of
#: stage time = 2 h 06 min wall; per stage ``state.json`` timings and ``train/attempt-*/train_result.json``),
#: counting only the attempts that ran (stage 3 passed at its first):
#: the plan's upper-bound generated tokens of those attempts (881,376: every generation to ``max_new_tokens``,
#: few-shot prefill not counted), over generation + evaluation seconds (2,859 s) = 308 tok/s, / 287 -> 1.07
#: (about 1: most generations stop early, which pays for the prefill; 190-900 tok/s by stage);
GEN_SHARE = 1.07
#: trained tokens over training seconds (train_result.json: 674,034 tokens in 4,595 s -> 147 tok/s) / 204;
TRAIN_SHARE = 0.72
#: the rest of ``train_s`` (4,703 s) per training run (17 runs): loading, merging, saving: 6.4 s. No other
#: setup: the stages' timings sum to the run's wall time (7,563 s of 7,560 s).
RUN_OVERHEAD_S = 6.4

# ---- per stage kind. The task kind: runs/tasks-std3 stage 0 (standard preset, factual_qa, 3 rounds; its
# manifest's stage 0 is today's) and runs/tasks-std6 stage 1 (standard, 3 tasks, sampling.n 16, 2 rounds;
# today's tasks.yaml), from their data.jsonl, metrics.json and train/attempt-*/train_result.json.
#: Kept / generated candidates (first data) by stage kind, measured on this machine's quick run (docs/results.md,
#: runs/skills-q6: 92/112, 54/96, 61/64, 48/48, 23/120; revision 0.3: between that 0.19 and runs/skills-std1's
#: first attempt, 102 of 272). task: 734 kept of 1,440 cases generated (stage 0: 306 of 400, 0.77, factual QA
#: from the base model; stage 1: 428 of 1,040, 0.41: factual_qa 240 of 240 (its 0.4 share, 160 more cases
#: left ungenerated), explanation 134 of 400, summarization 54 of 400). Other kinds: the kind's ``default_yield``.
MEASURED_YIELDS = {"explicit": 0.82, "implicit": 0.56, "generation": 0.95, "evaluation": 1.0, "revision": 0.3,
                   "task": 0.51}
#: Mean tokens of one training record (prompt + response, non-padding, as the trainer counts them) by stage
#: kind: trained tokens / (records x epochs) over every training run of the stage, the skills kinds in
#: runs/skills-std1. task: 349,818 tokens / (4,672 records x 2 epochs) = 37.4 over the 7 runs (stage 0: 31.0,
#: factual QA; stage 1: 43.9 with its replayed stage-0 records, summaries about 120). Other kinds:
#: `plan.PROMPT_TOKENS` + the answer's token limit (capped at ``training.max_length``).
RECORD_TOKENS = {"explicit": 28, "implicit": 27, "generation": 33, "evaluation": 53, "revision": 48, "task": 37}
#: Kept records per instance of a round, as a share of ``rounds.keep``: measured in runs/skills-std1
#: (keep 2): 1,560 records kept in the 12 rounds of stages 1, 2, 4 and 5 (1,260 instances), 0.43-0.76 by stage.
ROUND_KEEP_SHARE = 0.62
#: The same by stage kind where it differs. task: 968 of 1,200 (keep 2): stage 0 189 / 192 / 190 of 100
#: instances a round (0.95), stage 1 184 / 213 of 150 (0.66), as metrics.json's ``rounds`` (what was trained).
ROUND_KEEP_SHARE_BY_KIND = {"task": 0.81}
#: The pipeline's (generation, training) shares of bench's rates by stage kind where they differ from
#: `GEN_SHARE`, `TRAIN_SHARE`. task, both stages together: generation = the plan's upper-bound tokens of the
#: two stages (every answer to its family's cap: 236,200 + 2,271,027) over their generation + evaluation
#: seconds (343 + 1,811 s) / 287 -> 4.05 (answers stop far below their caps: 30,917 and 379,880 tokens were
#: generated; per stage 2.40 and 4.37: stage 0's critic and reviser calls are 1-9 prompts each, and 16-case
#: chunks of 3 samples fill a third of a 128-row batch); training = 349,818 tokens in 1,167 s (300 tok/s;
#: stage 0 376, stage 1 262) / 204 -> 1.47. runs/skills-std1 trained at 147 tok/s, later skills runs at
#: 280-320 (skills-std5, -std6): much of the gap is that run's machine load, not the kind.
KIND_SHARES = {"task": (4.05, 1.47)}
