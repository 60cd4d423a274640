"""Stage 3 families: generation tasks ("Generate a question about science").

The output is itself a prompt-like text (a question, a user message, a request,
a statement, an instruction). Verifiers check its form (question mark,
imperative verb, politeness markers, declarative sentence), that it is on the
requested subject (a per-domain word list), its length, and that it does not
copy the instruction. `verify_paraphrase` filters a prompt writer's rewording
of an instruction: it must keep the subject and the kind of task.
"""

from __future__ import annotations

from typing import ClassVar

from cai_bootstrap.tasks import bank, checks
from cai_bootstrap.tasks.base import Instance, Split, Verdict
from cai_bootstrap.tasks.checks import Result
from cai_bootstrap.tasks.skills.templated import TemplatedFamily, check_is_question, check_not_opinion

HELP_MARKERS = ("help", "assist", "assistance", "can you", "could you", "would you", "how do i", "how can i", "i need",
                "i want", "please", "advice", "show me", "explain", "tips", "what should i", "any ideas", "struggling",
                "stuck", "not sure how")
REQUESTER = ("i", "im", "my", "me", "we", "our", "us")
POLITE_MARKERS = ("please", "could you", "would you", "may i", "would you mind", "kindly", "i would appreciate",
                  "if you dont mind", "thank you", "thanks", "excuse me", "if possible", "id be grateful", "i would be grateful",
                  "do you mind", "would it be possible")
RUDE_WORDS = ("stupid", "idiot", "dumb", "shut up", "hurry up", "whatever", "useless")
IMPERATIVE_VERBS = frozenset(
    "write explain describe list summarize summarise give tell create name translate compare calculate find suggest "
    "generate make help answer define identify plan draft recommend outline provide classify rewrite compose design "
    "teach show solve count choose convert estimate analyze analyse check correct edit list prepare propose rank "
    "sort predict imagine invent review evaluate recommend research share state discuss organize organise build "
    "develop produce prepare detail illustrate offer".split()
)
PARAPHRASE_INSTRUCTION = "Rewrite this instruction in different words: {instruction}"
PARAPHRASE_DEMOS = (
    ("Rewrite this instruction in different words: Generate a question about chess.",
     "Write a question that someone might ask about chess."),
    ("Rewrite this instruction in different words: Create a user message asking for help with knitting.",
     "Write a message in which a user asks for help with knitting."),
    ("Rewrite this instruction in different words: Produce a factual statement about volcanoes.",
     "Write one true statement about volcanoes."),
    ("Rewrite this instruction in different words: Write an example of a polite request about chess.",
     "Give an example of asking politely for something about chess."),
    ("Rewrite this instruction in different words: Generate an instruction for an AI about knitting.",
     "Write a task that a user could give an AI assistant about knitting."),
)


class GenerationFamily(TemplatedFamily):
    skill = "generation"
    #: Keyword groups a paraphrased instruction must keep (besides the domain).
    kind_groups: ClassVar[tuple[tuple[str, ...], ...]] = ()

    def instances(self, split: Split, n: int, seed: int) -> list[Instance]:
        tpls = self.templates(split)
        out = []
        for dom, t in bank.spread([bank.domains(split)], len(tpls), n, seed):
            out.append(
                Instance(
                    id=self.make_id(split, dom.name, t), family=self.name, split=split,
                    instruction=tpls[t].format(domain=dom.name), topic=dom.name,
                    reference={"domain": dom.name, "keywords": list(dom.keywords), "template": tpls[t]},
                )
            )
        return out

    def common(self, instance: Instance, output: str) -> list[Result]:
        return [
            checks.check_nonempty(output),
            checks.check_leak(output),
            checks.check_no_echo(output, self.directives(), instance.instruction),
            check_no_lead_in(output),
            checks.check_finished(output),
        ]

    def with_instruction(self, instance: Instance, instruction: str) -> Instance:
        """The same case under a reworded instruction (the verifier's reference is unchanged)."""
        return instance.model_copy(update={"instruction": instruction})


def check_no_lead_in(text: str) -> Result:
    first = checks.normalize(text)
    hit = any(first == p or first.startswith(p + " ") for p in ("here is", "heres", "sure", "certainly", "example", "question", "statement", "instruction", "message"))
    return Result("lead_in", not hit, "starts with a lead-in ('Here is ...', 'Question:') instead of the text")


def verify_paraphrase(family: GenerationFamily, instance: Instance, text: str) -> Verdict:
    """Filter for a prompt writer's rewording: keeps the domain and the kind of task, differs from the seed."""
    domain = [w for w in checks.normalize(instance.reference["domain"]).split() if w != "the"]
    return checks.verdict("paraphrase", [
        checks.check_nonempty(text),
        checks.check_leak(text),
        Result("changed", checks.normalize(text) != checks.normalize(instance.instruction), "identical to the seed"),
        checks.check_groups(text, [domain], "keeps_domain"),
        checks.check_groups(text, family.kind_groups, "keeps_task"),
        checks.check_length(text, 4, 30),
        checks.check_single_sentence(text, 2),
        checks.check_repetition(text),
    ])


class GenQuestion(GenerationFamily):
    name = "gen_question"
    description = "Generate a question about <subject>"
    kind_groups = (("question", "ask", "asking", "wonder"),)
    demos = (
        ("Generate a question about chess.", "How many pieces does each player have at the start of a chess game?"),
        ("Generate a question about volcanoes.", "Why do some volcanoes erupt more often than others?"),
        ("Write a question about knitting.", "What kind of yarn is best for a first knitting project?"),
        ("Ask a question about the post office.", "What time does the post office open on Saturdays?"),
    )

    def reference_output(self, instance: Instance) -> str | None:
        d = instance.reference["domain"]
        return f"What is the most important thing to know about {d}?"

    def verify(self, instance: Instance, output: str) -> Verdict:
        return checks.verdict(self.name, [
            *self.common(instance, output),
            *check_is_question(output),
            checks.check_topic(output, instance.reference["keywords"]),
            checks.check_length(output, 4, 25),
            checks.check_single_sentence(output, 1),
            checks.check_repetition(output),
        ])


class GenHelpRequest(GenerationFamily):
    name = "gen_help_request"
    description = "Create a user message asking for help with <subject>"
    kind_groups = (("help", "assist", "assistance", "support"), ("message", "request", "user", "ask", "asks", "asking", "someone", "person"))
    demos = (
        ("Create a user message asking for help with knitting.",
         "Hi, I'm learning to knit and my scarf keeps getting wider. Can you help me figure out what I'm doing wrong?"),
        ("Create a user message asking for help with chess.",
         "Can you help me? I keep losing my queen early in chess games and I don't know how to stop it."),
        ("Write a message from a user who needs help with taxes.",
         "I need help filling in my first tax return. Where should I start?"),
        ("Create a user message asking for help with volcanoes.",
         "Could you help me with my school project on volcanoes? I need to explain why they erupt."),
    )

    def reference_output(self, instance: Instance) -> str | None:
        d = instance.reference["domain"]
        return f"Can you help me? I have a question about {d}."

    def verify(self, instance: Instance, output: str) -> Verdict:
        toks = checks.tokens(output)
        asks = checks.contains_any(output, HELP_MARKERS) or output.strip().endswith("?")
        return checks.verdict(self.name, [
            *self.common(instance, output),
            Result("asks_for_help", bool(asks), "does not ask for help"),
            Result("user_voice", bool(set(toks) & set(REQUESTER)) or (toks[:1] in (["can"], ["could"], ["please"])),
                   "not written as a user (no I/my/me)"),
            checks.check_topic(output, instance.reference["keywords"]),
            checks.check_length(output, 5, 45),
            checks.check_single_sentence(output, 3),
            checks.check_repetition(output),
        ])


class GenPoliteRequest(GenerationFamily):
    name = "gen_polite_request"
    description = "Write an example of a polite request about <subject>"
    kind_groups = (("polite", "politely", "courteous", "courteously", "nice", "nicely", "kind", "kindly", "respectful"),
                   ("request", "ask", "asking", "asks"))
    demos = (
        ("Write an example of a polite request about chess.", "Could you please teach me how the knight moves in chess?"),
        ("Write an example of a polite request about knitting.", "Would you mind showing me how to cast on stitches, please?"),
        ("Give an example of a polite request related to the post office.",
         "Excuse me, could you please tell me when the post office opens?"),
        ("Write a polite request about volcanoes.", "May I ask you to explain how volcanoes form, please?"),
    )

    def reference_output(self, instance: Instance) -> str | None:
        d = instance.reference["domain"]
        return f"Could you please tell me more about {d}?"

    def verify(self, instance: Instance, output: str) -> Verdict:
        polite = checks.contains_any(output, POLITE_MARKERS)
        rude = checks.contains_any(output, RUDE_WORDS)
        return checks.verdict(self.name, [
            *self.common(instance, output),
            Result("polite", bool(polite), "no politeness marker (please, could you, would you mind, ...)"),
            Result("request_form", output.strip().endswith("?") or checks.contains_phrase(output, "please"),
                   "not phrased as a request"),
            Result("rude", not rude, f"rude words {rude[:1]}"),
            checks.check_topic(output, instance.reference["keywords"]),
            checks.check_length(output, 4, 35),
            checks.check_single_sentence(output, 2),
            checks.check_repetition(output),
        ])


class GenStatement(GenerationFamily):
    name = "gen_statement"
    description = "Produce a factual statement about <subject>"
    kind_groups = (("fact", "factual", "facts", "statement", "true", "state", "accurate", "correct"),)
    demos = (
        ("Produce a factual statement about chess.", "Chess is played on a board with sixty-four squares."),
        ("Produce a factual statement about volcanoes.", "Lava is molten rock that flows out of a volcano."),
        ("Write a true statement about knitting.", "Knitting uses needles to loop yarn into fabric."),
        ("Make a factual statement about the post office.", "Post offices sell stamps and deliver letters and parcels."),
    )

    def reference_output(self, instance: Instance) -> str | None:
        d = instance.reference["domain"]
        return f"Many people find {d} an interesting subject."

    def verify(self, instance: Instance, output: str) -> Verdict:
        toks = checks.tokens(output)
        declarative = bool(toks) and toks[0] not in checks.QUESTION_STARTS and toks[0] not in IMPERATIVE_VERBS
        return checks.verdict(self.name, [
            *self.common(instance, output),
            checks.check_not_question(output),
            Result("declarative", declarative, "not a declarative statement"),
            check_not_opinion(output),
            checks.check_topic(output, instance.reference["keywords"]),
            checks.check_length(output, 5, 35),
            checks.check_single_sentence(output, 2),
            checks.check_repetition(output),
        ])


class GenInstruction(GenerationFamily):
    name = "gen_instruction"
    description = "Generate an instruction for an AI about <subject>"
    kind_groups = (("instruction", "instructions", "task", "command", "prompt", "request"),
                   ("ai", "assistant", "model", "chatbot", "computer", "bot"))
    demos = (
        ("Generate an instruction for an AI about chess.", "Explain the rules for how a pawn moves in chess."),
        ("Generate an instruction for an AI about knitting.", "List the materials a beginner needs to start knitting."),
        ("Create a task instruction for an AI about volcanoes.", "Describe what happens inside a volcano before it erupts."),
        ("Write an instruction that a user could give an AI assistant about the post office.",
         "Write a short note asking the post office to hold my mail for a week."),
    )

    def reference_output(self, instance: Instance) -> str | None:
        d = instance.reference["domain"]
        return f"Explain the basics of {d}."

    def verify(self, instance: Instance, output: str) -> Verdict:
        toks = checks.tokens(output)
        if toks[:1] == ["please"]:
            toks = toks[1:]
        return checks.verdict(self.name, [
            *self.common(instance, output),
            Result("imperative", bool(toks) and toks[0] in IMPERATIVE_VERBS, "does not start with a command verb"),
            checks.check_not_question(output),
            checks.check_topic(output, instance.reference["keywords"]),
            checks.check_length(output, 3, 35),
            checks.check_single_sentence(output, 2),
            checks.check_repetition(output),
        ])


FAMILIES = [GenQuestion(), GenHelpRequest(), GenPoliteRequest(), GenStatement(), GenInstruction()]
