"""Stage 2 families: implicit instructions ("What is the capital of France?", "2 + 2 = ?").

Each instance carries its explicit phrasing (``Instance.explicit``), through which
an earlier model is asked for the answer, and the reference that checks it. The
trained model sees only the implicit form. ``writer`` in the reference says what
a prompt writer may be asked ("Generate a question about: <topic>") and what its
question must keep (keyword groups) and must not give away (the answer).
"""

from __future__ import annotations

from typing import ClassVar

from cai_bootstrap.tasks import bank
from cai_bootstrap.tasks.base import Instance, Split, Verdict
from cai_bootstrap.tasks.skills.explicit_families import CompleteSentence, greeting_reply, verify_greeting, writer_topic
from cai_bootstrap.tasks.skills.templated import TemplatedFamily, verify_answer, verify_question

EXPLICIT_QUESTION = "Answer this question: {q}"


class ImplicitFamily(TemplatedFamily):
    skill = "implicit"
    #: The stage-1 family whose phrasing (and demos) the answerer is given.
    explicit_family: ClassVar[str] = ""
    #: The stage-1 family a prompt writer follows, or "" when prompts are seed only.
    writer_family: ClassVar[str] = ""

    def directives(self) -> list[str]:
        return []


def _writer_ref(fact: bank.Fact) -> dict | None:
    topic = writer_topic(fact)
    if topic is None:
        return None
    return {"topic": topic.name, "groups": topic.keyword_groups(), "forbidden": list(topic.forbidden)}


def verify_written_question(ref: dict, question: str) -> Verdict:
    """Filter for a prompt writer's question: a wh-question that keeps the topic and hides the answer."""
    return verify_question("writer", ref, question, ["generate a question", "question about"], wh_only=True)


class ImplicitQuestion(ImplicitFamily):
    name = "implicit_question"
    description = "A plain question with a known answer, e.g. 'What is the capital of France?'"
    explicit_family = "answer_question"
    writer_family = "ask_question"
    categories: ClassVar[tuple[str, ...]] = ("capitals", "colours", "sounds", "plurals", "science")
    demos = (
        ("What is the capital of Belarus?", "The capital of Belarus is Minsk."),
        ("How many wheels does a tricycle have?", "A tricycle has three wheels."),
        ("What sound does a parrot make?", "A parrot squawks."),
        ("What colour is a fresh mint leaf?", "A fresh mint leaf is green."),
    )

    def instances(self, split: Split, n: int, seed: int) -> list[Instance]:
        groups = []
        for cat in self.categories:
            group = []
            for fact in bank.facts(cat, split):
                if fact.question:
                    group.append((fact, fact.question, f"fixed:{fact.question}"))
                else:
                    raw = bank.load("templates")["questions"][cat][split]
                    group += [(fact, q, tpl) for q, tpl in zip(bank.question_forms(fact, split), raw)]
            groups.append(group)
        out = []
        for (fact, q, tpl), _ in bank.spread(groups, 1, n, seed):
            out.append(
                Instance(
                    id=f"{self.name}/{split}/{bank.slug(fact.topic_id)}/{bank.slug(tpl)[:40]}", family=self.name,
                    split=split, instruction=q, explicit=EXPLICIT_QUESTION.format(q=q), topic=fact.topic_id,
                    reference={**fact.reference(), "question": q, "template": tpl, "writer": _writer_ref(fact)},
                )
            )
        return out

    def verify(self, instance: Instance, output: str) -> Verdict:
        return verify_answer(self.name, instance.reference, output, [], payload=instance.instruction)


class ImplicitArithmetic(ImplicitFamily):
    name = "implicit_arithmetic"
    description = "A bare sum, e.g. '2 + 2 = ?'"
    #: the seed bank computes every sum's answer (`options.computed_answers`, stages/computed.py)
    computed_reference: ClassVar[bool] = True
    explicit_family = "answer_question"
    writer_family = "ask_question"
    demos = (
        ("45 + 38 = ?", "45 + 38 = 83."),
        ("What is 50 - 17?", "50 - 17 = 33."),
        ("14 x 3 = ?", "14 x 3 = 42."),
    )

    def instances(self, split: Split, n: int, seed: int) -> list[Instance]:
        by_op: dict[str, list] = {}
        tpls = bank.load("templates")["arithmetic"]["implicit"][split]
        for fact in bank.facts("arithmetic", split):
            by_op.setdefault(fact.op, []).append(fact)
        groups = list(by_op.values())
        width = max(len(v) for v in tpls.values())
        out = []
        for fact, t in bank.spread(groups, width, n, seed):
            forms = tpls[fact.op]
            tpl = forms[t % len(forms)]
            a, b = (int(x) for x in fact.operands)
            q = tpl.format(a=a, b=b)
            out.append(
                Instance(
                    id=f"{self.name}/{split}/{bank.slug(fact.topic_id)}/t{t % len(forms)}", family=self.name,
                    split=split, instruction=q, explicit=EXPLICIT_QUESTION.format(q=bank.explicit_question(fact, "train")),
                    topic=fact.topic_id,
                    reference={**fact.reference(), "question": q, "template": tpl, "writer": _writer_ref(fact)},
                )
            )
        # spread may pick the same (fact, template) twice when ops have fewer forms than `width`
        return list({i.id: i for i in out}.values())

    def verify(self, instance: Instance, output: str) -> Verdict:
        return verify_answer(self.name, instance.reference, output, [], max_words=20)


class ImplicitCompletion(ImplicitFamily):
    name = "implicit_completion"
    description = "A sentence start to complete, e.g. 'The sun is a...'"
    explicit_family = "complete_sentence"
    demos = (
        ("The capital of Belarus is...", "The capital of Belarus is Minsk."),
        ("A week has seven...", "A week has seven days."),
        ("Fish live in...", "Fish live in water."),
    )

    def instances(self, split: Split, n: int, seed: int) -> list[Instance]:
        tpls = self.templates(split)
        explicit = bank.family_templates("complete_sentence", "train")[0]
        out = []
        for (fact, stem), t in bank.spread(CompleteSentence.stems(split), len(tpls), n, seed):
            out.append(
                Instance(
                    id=f"{self.name}/{split}/{bank.slug(fact.topic_id)}/t{t}", family=self.name, split=split,
                    instruction=tpls[t].format(stem=stem), explicit=explicit.format(stem=stem), topic=fact.topic_id,
                    reference={**fact.reference(), "stem": stem, "template": tpls[t], "writer": None},
                )
            )
        return out

    def verify(self, instance: Instance, output: str) -> Verdict:
        ref = instance.reference
        return verify_answer(self.name, ref, output, [], max_words=25, max_sentences=1, payload=ref["stem"], stem=ref["stem"])


class ImplicitGreeting(ImplicitFamily):
    name = "implicit_greeting"
    description = "A greeting or small talk, e.g. 'How are you today?'"
    explicit_family = "respond_greeting"
    demos = (
        ("Good day to you!", "Good day to you too! How can I help you?"),
        ("How are things?", "Things are going well, thank you! How about you?"),
        ("Thanks for the advice!", "You're welcome! I'm glad it helped."),
    )

    def instances(self, split: Split, n: int, seed: int) -> list[Instance]:
        explicit = bank.family_templates("respond_greeting", "train")[0]
        out = []
        for g, _ in bank.spread([bank.greetings(split)], 1, n, seed):
            out.append(
                Instance(
                    id=f"{self.name}/{split}/{bank.slug(g.text)}", family=self.name, split=split,
                    instruction=g.text, explicit=explicit.format(greeting=g.text), topic=g.text,
                    reference={"greeting": g.text, "reply": list(g.reply), "template": f"greeting:{g.text}", "writer": None},
                )
            )
        return out

    def reference_output(self, instance: Instance) -> str | None:
        return greeting_reply(instance.reference)

    def verify(self, instance: Instance, output: str) -> Verdict:
        return verify_greeting(self.name, instance.reference, output, [])


FAMILIES = [ImplicitQuestion(), ImplicitArithmetic(), ImplicitCompletion(), ImplicitGreeting()]
