"""Role prompts of the constitutional stage: the writer's, critic's, reviser's and judge's texts, and the pair judge."""

from __future__ import annotations

import random

from cai_bootstrap.engines.base import Engine
from cai_bootstrap.stages.critique_revise import templated_prompt
from cai_bootstrap.stages.pair_judge import judge_in_order
from cai_bootstrap.prompt_format import format_few_shot, format_prompt
from cai_bootstrap.tasks.base import Verdict
from cai_bootstrap.tasks.constitutional.seeds import SeedTopic

STATS_FILE = "constitutional_stats.json"
WRITER_INSTRUCTION = "Write a user request about: {description}"
#: Hand-written chosen response of ``fallback_to_reference`` pairs (tiny preset only).
REFERENCE_REFUSAL = (
    "I can't help with that, because it could seriously hurt someone. "
    "If something is troubling you, I'm glad to help you find a safe way to deal with it."
)


#: records of `build_contrast_pairs`, beside ``data.jsonl``
CONTRAST_FILE = "contrast.jsonl"
#: role that writes the evasive refusals of contrast pairs (shipped curricula: the base model)
REFUSAL_WRITER = "refusal_writer"
REFUSAL_INSTRUCTION = "Decline this request in one or two sentences: {prompt}"

# --------------------------------------------------------------------------- prompts

CRITIQUE_TEMPLATE = (
    "Here is a conversation between a user and an AI assistant.\n\nUser: {prompt}\n\nAssistant: {response}\n\n{request}"
)
REVISION_TEMPLATE = (
    "Here is a conversation between a user and an AI assistant, and a critique of the assistant's response.\n\n"
    "User: {prompt}\n\n"
    "Assistant: {response}\n\n"
    "Critique: {critique}\n\n"
    "{request} Write only the new response."
)
JUDGE_TEMPLATE = (
    "Two AI assistants answered the same user request. Which response is better: more helpful, "
    "more honest, and harmless?\n\n"
    "User request: {prompt}\n\n"
    "Response A: {a}\n\n"
    "Response B: {b}\n\n"
    "Answer with the letter of the better response, A or B."
)
JUDGE_OPTIONS = ["A", "B"]


def writer_input(topic: SeedTopic, shots: list[SeedTopic], rng: random.Random) -> str:
    demos = [(WRITER_INSTRUCTION.format(description=t.description), rng.choice(t.train)) for t in shots]
    return format_few_shot(WRITER_INSTRUCTION.format(description=topic.description), demos)


def critique_input(prompt: str, response: str, request: str, examples: list) -> str:
    demos = [({"prompt": ex.prompt, "response": ex.response, "request": ex.critique_request}, ex.critique)
             for ex in examples]
    return templated_prompt(CRITIQUE_TEMPLATE, {"prompt": prompt, "response": response or "(no answer)", "request": request},
                            demos)


def revision_input(prompt: str, response: str, critique: str, request: str, examples: list) -> str:
    demos = [({"prompt": ex.prompt, "response": ex.response, "critique": ex.critique, "request": ex.revision_request},
              ex.revision) for ex in examples]
    case = {"prompt": prompt, "response": response or "(no answer)", "critique": critique or "(none)", "request": request}
    return templated_prompt(REVISION_TEMPLATE, case, demos)


def judge_input(prompt: str, a: str, b: str) -> str:
    return format_prompt(JUDGE_TEMPLATE.format(prompt=prompt, a=a or "(empty)", b=b or "(empty)"))


def judge_pairs(engine: Engine, prompts: list[str], originals: list[str], revisions: list[str]) -> list[Verdict]:
    """Does the judge prefer the revision? Asked in both orders, to cancel position bias."""
    pairs, swapped, items = [], [], []
    for p, o, r in zip(prompts, originals, revisions):
        pairs += [(o, r), (o, r)]
        swapped += [False, True]
        items += [p, p]
    prefs = judge_in_order(engine, lambda i, a, b: judge_input(items[i], a, b), pairs, swapped)
    out = []
    for i in range(len(prompts)):
        first, second = prefs[2 * i].winner == 1, prefs[2 * i + 1].winner == 1  # revision chosen in each order
        if first and second:
            out.append(Verdict(passed=True, score=1.0, check="judge", reason="revision preferred in both orders"))
        elif not first and not second:
            out.append(
                Verdict(
                    passed=False, score=0.0, check="judge_prefers_original", reason="original preferred in both orders"
                )
            )
        else:
            pos = JUDGE_OPTIONS[prefs[2 * i].picked]
            out.append(
                Verdict(
                    passed=False, score=0.5, check="judge_inconsistent", reason=f"picked position {pos} in both orders"
                )
            )
    return out
