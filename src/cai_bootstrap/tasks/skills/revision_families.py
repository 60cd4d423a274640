"""Stage 5 families: revision tasks ("Fix the errors in: ...").

A case is a clean one-sentence answer (seed text, or one an earlier model wrote)
with flaws injected on purpose: a wrong fact swapped in, misspellings, filler
and repetition, shouting capitals, rude remarks, or the answer replaced by a
vague phrase. The verifier confirms the improvement: every injected flaw is
gone AND the content is kept (the right answer affirmed, the subject still
named, sane length, not a copy of the flawed text, no "Here is the revised
text:" lead-in).
"""

from __future__ import annotations

import random
import re
from typing import ClassVar

from cai_bootstrap.tasks import bank, checks, flaws
from cai_bootstrap.tasks.base import Instance, Split, Verdict
from cai_bootstrap.tasks.checks import Result
from cai_bootstrap.tasks.skills.constructed import (
    ConstructedFamily,
    fact_groups,
    material_fact,
    material_request,
)
from cai_bootstrap.tasks.skills.templated import check_not_tautology

#: What the critic role is asked (stage-4 model); its answer becomes the feedback.
CRITIC_INSTRUCTION = "What needs to be improved in this response?\n{text}"
CRITIC_DEMOS = (
    ("What needs to be improved in this response?\nA tricylce has four wheels.",
     "The fact is wrong: a tricycle has three wheels, not four. Also fix the spelling of 'tricylce'."),
    ("What needs to be improved in this response?\nUm, a week has, a week has, you know, seven days, days.",
     "It repeats itself and uses filler words like 'um' and 'you know'. Say it once, clearly."),
    ("What needs to be improved in this response?\nUGH, A FRESH MINT LEAF IS GREEN. USE YOUR EYES!!!",
     "It is written in capital letters and the tone is rude. Write it calmly and politely."),
    ("What needs to be improved in this response?\nThe capital of Belarus is hard to say.",
     "It does not answer the question. Give the missing information: the capital is Minsk."),
)
REVISION_CATEGORIES = ("capitals", "colours", "sounds", "plurals", "science", "arithmetic")


def inject(text: str, flaw_names: list[str], fact: bank.Fact, case: dict, rng: random.Random) -> dict | None:
    """Apply the flaws in order; returns the flawed text and what the verifier needs, or None."""
    split = case["split"]
    info: dict = {"typos": [], "fillers": [], "rude": [], "vague": "", "wrong_injected": ""}
    out = text
    for flaw in flaw_names:
        if flaw == "wrong_fact":
            out = flaws.corrupt(out, fact.reference(), case["wrong"])
            info["wrong_injected"] = case["wrong"]
        elif flaw == "misspelling":
            got = flaws.misspell(out, rng, [*fact.answers, case["wrong"], *fact.content_words()])
            if got:
                out, info["typos"] = got
            else:
                out = None
        elif flaw == "filler":
            out, info["fillers"] = flaws.add_filler(out, rng, bank.judgement("filler", split))
        elif flaw == "shouting":
            out = flaws.shout(out)
        elif flaw == "rude":
            rude = bank.judgement("rude", split)
            info["rude"] = [rng.choice(rude["prefix"]), rng.choice(rude["suffix"])]
            out = flaws.make_rude(out, *info["rude"])
        elif flaw == "missing":
            info["vague"] = rng.choice(bank.judgement("vague", split))
            out = flaws.make_vague(out, fact.reference(), info["vague"])
            if out is None:  # the answer is not where we can blank it: fall back to an evasive reply
                info["vague"] = rng.choice(bank.judgement("evasive", split))
                out = info["vague"]
        if out is None:
            return None
    info["flawed"] = out
    return info


_BARE_ANSWER = re.compile(r"^(?:the )?(?:answer|response|reply) is (?:the )?(.+)$")


def check_content(output: str, fact: dict) -> Result:
    """The subject is still named, or the output is a bare "The answer is X." with X the fact's
    answer where that answer is itself a name of the subject (an irregular plural, "teeth"; a
    chemical symbol, "Au"): "The answer is teeth." keeps it as "The answer is buses." does
    ("buses" is a form of "bus"); "Au is a chemical." does not."""
    got = checks.check_groups(output, [fact["content"]], "content")
    if got.ok or not (fact.get("category") == "plurals" or "symbol" in checks.tokens(fact.get("key", ""))):
        return got
    m = _BARE_ANSWER.match(checks.normalize(output))
    bare = bool(m) and m.group(1) in checks.answer_forms(fact["answers"], fact.get("inflect", False))
    return got if not bare else Result("content", True)


def verify_revision(name: str, ref: dict, output: str) -> Verdict:
    """The injected flaws are gone and the content is kept."""
    fact = ref["fact"]
    wrong = list(dict.fromkeys([*fact.get("wrong", []), *([ref["wrong_injected"]] if ref.get("wrong_injected") else [])]))
    results = [
        checks.check_nonempty(output),
        checks.check_leak(output),
        flaws.check_not_copy(output, ref["flawed"]),
        flaws.check_no_preamble(output),
        flaws.check_not_verdict(output),
    ]
    results += checks.check_fact(output, fact, wrong)
    results.append(check_not_tautology(output, ref["clean"]))
    if fact.get("content"):
        results.append(check_content(output, fact))
    kinds = ref["flaws"]
    if "misspelling" in kinds:
        results.append(flaws.check_no_typos(output, ref["typos"]))
    if "filler" in kinds:
        results.append(flaws.check_no_filler(output, ref["fillers"], ref["clean"]))
    if "shouting" in kinds:
        results.append(flaws.check_no_shouting(output, ref["clean"]))
    if "rude" in kinds:
        results.append(flaws.check_polite(output, ref["rude"]))
    if "missing" in kinds and ref.get("vague"):
        results.append(Result("vague", not checks.contains_phrase(output, ref["vague"]), "still evasive"))
    limit = max(30, 2 * checks.word_count(ref["clean"]) + 5)
    results += [
        checks.check_not_question(output),
        checks.check_finished(output),
        checks.check_length(output, 2, limit),
        checks.check_single_sentence(output, 3),
        checks.check_repetition(output),
    ]
    return checks.verdict(name, results)


class RevisionFamily(ConstructedFamily):
    skill = "revision"
    #: Flaw combinations this family injects (one chosen per case).
    flaw_sets: ClassVar[tuple[tuple[str, ...], ...]] = ()

    def cases(self, split: Split, n: int, seed: int) -> list[dict]:
        tpls = self.templates(split)
        out = []
        for fact, t in bank.spread(fact_groups(split, REVISION_CATEGORIES), len(tpls), n, seed):
            cid = f"{self.name}/{split}/{bank.slug(fact.topic_id)}/t{t}"
            rng = random.Random(bank.stable_hash("case", cid))
            kinds = list(rng.choice(self.flaw_sets))
            out.append({"id": cid, "split": split, "t": t, "flaws": kinds, "wrong": rng.choice(flaws.wrong_answers(fact)),
                        "feedback_seed": rng.choice(bank.judgement("feedback", split)[kinds[0]]),
                        "materials": {"answer": material_request(fact, split)}})
        return out

    def render(self, case: dict, texts: dict[str, str]) -> Instance | None:
        req = case["materials"]["answer"]
        fact = material_fact(req)
        clean = texts["answer"]
        info = inject(clean, case["flaws"], fact, case, random.Random(bank.stable_hash("flaw", case["id"])))
        if info is None:
            return None
        feedback = texts.get("feedback") or case["feedback_seed"]
        tpl = self.templates(case["split"])[case["t"]]
        instruction = tpl.format(q=req["question"], text=info["flawed"], feedback=feedback)
        return Instance(
            id=case["id"], family=self.name, split=case["split"], instruction=instruction, topic=fact.topic_id,
            reference={"fact": fact.reference(), "flaws": case["flaws"], "clean": clean, "question": req["question"],
                       "feedback": feedback if "{feedback}" in tpl else None, **info, "template": tpl, "case": case},
        )

    def verify(self, instance: Instance, output: str) -> Verdict:
        return verify_revision(self.name, instance.reference, output)

    def target(self, instance: Instance) -> str:
        """A known-good revision (the clean text), for tests and as a last-resort reference."""
        return instance.reference["clean"]

    def foil(self, instance: Instance) -> str | None:
        return instance.reference["flawed"]


class MakeHelpful(RevisionFamily):
    name = "make_helpful"
    description = "Make this more helpful: <a reply whose answer was replaced by a vague phrase>"
    flaw_sets = (("missing",),)
    demos = (
        ("Make this more helpful:\nQuestion: What is the capital of Belarus?\nResponse: The capital of Belarus is something you can look up.",
         "The capital of Belarus is Minsk."),
        ("Make this more helpful:\nQuestion: How many wheels does a tricycle have?\nResponse: A tricycle has a matter of debate wheels.",
         "A tricycle has three wheels."),
        ("Make this more helpful:\nQuestion: What colour is a fresh mint leaf?\nResponse: That is a good question.",
         "A fresh mint leaf is green."),
    )


class FixErrors(RevisionFamily):
    name = "fix_errors"
    description = "Fix the errors in: <text with a wrong fact and/or misspellings>"
    flaw_sets = (("wrong_fact",), ("misspelling",), ("wrong_fact", "misspelling"))
    demos = (
        ("Fix the errors in: A tricylce has four wheels.", "A tricycle has three wheels."),
        ("Fix the errors in: The capital of Belarus is Warsaw.", "The capital of Belarus is Minsk."),
        ("Fix the errors in: A fresh mint leaf is gren.", "A fresh mint leaf is green."),
    )


class RewriteClearly(RevisionFamily):
    name = "rewrite_clearly"
    description = "Rewrite this more clearly: <text with filler words and repetition>"
    flaw_sets = (("filler",),)
    demos = (
        ("Rewrite this more clearly: Um, a week has, a week has, you know, seven, days, days.", "A week has seven days."),
        ("Rewrite this more clearly: Basically, the capital of, the capital of Belarus is, like, Minsk, Minsk.",
         "The capital of Belarus is Minsk."),
        ("Rewrite this more clearly: I mean, a fresh mint, a fresh mint leaf is, sort of, green, green.",
         "A fresh mint leaf is green."),
    )


class ImproveResponse(RevisionFamily):
    name = "improve_response"
    description = "Improve this response: <a right answer in shouting capitals and/or with rude remarks>"
    flaw_sets = (("shouting",), ("rude",), ("rude", "shouting"))
    demos = (
        ("Improve this response:\nQuestion: What colour is a fresh mint leaf?\nResponse: UGH, A FRESH MINT LEAF IS GREEN!!!",
         "A fresh mint leaf is green."),
        ("Improve this response:\nQuestion: What is the capital of Belarus?\nResponse: What a silly question. The capital of Belarus is Minsk. Use your brain.",
         "The capital of Belarus is Minsk."),
        ("Improve this response:\nQuestion: How many wheels does a tricycle have?\nResponse: A TRICYCLE HAS THREE WHEELS!!!",
         "A tricycle has three wheels."),
    )


class ReviseWithFeedback(RevisionFamily):
    name = "revise_with_feedback"
    description = "Revise according to feedback: <flawed text> + <feedback naming the flaw (critic model or seed)>"
    flaw_sets = tuple((k,) for k in flaws.FLAW_KINDS)
    demos = (
        ("Revise according to feedback:\nText: Minsk is the capitol of Belarus.\nFeedback: There are spelling mistakes. Fix the spelling.",
         "Minsk is the capital of Belarus."),
        ("Revise according to feedback:\nText: A tricycle has four wheels.\nFeedback: The answer is wrong. Correct the fact.",
         "A tricycle has three wheels."),
        ("Revise according to feedback:\nText: A FRESH MINT LEAF IS GREEN!!!\nFeedback: Do not write in capital letters.",
         "A fresh mint leaf is green."),
    )


FAMILIES = [MakeHelpful(), FixErrors(), RewriteClearly(), ImproveResponse(), ReviseWithFeedback()]
