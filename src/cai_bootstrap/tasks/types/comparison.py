"""Task type ``comparison``: compare two described options and recommend one for a need.

The options and their attribute values are given in the seed file; the better option for a need
is computed from the attributes the need depends on.
"""

from __future__ import annotations

import re
from itertools import combinations
from typing import Any

from cai_bootstrap.tasks import checks
from cai_bootstrap.tasks.base import Instance, Split, Verdict
from cai_bootstrap.tasks.checks import Result
from cai_bootstrap.tasks.types.common import (
    TaskTypeFamily,
    check_no_invented_numbers,
    check_no_refusal,
    check_rambling,
    check_restates,
    fmt_number,
)
from cai_bootstrap.tasks.types.reasoning import associated_names

RECOMMEND_MARKERS = ("better", "best", "recommend", "recommended", "recommendation", "choose", "choice", "pick",
                     "prefer", "preferable", "winner", "ideal", "suits", "suited", "suitable", "wiser", "smarter",
                     "go for", "go with", "opt for", "should get", "should buy", "would get", "would buy", "winner")


#: Words after a number-and-unit that make it a difference ("$50 more", "3 fewer seats", "6 kg lighter").
COMPARATIVE_WORDS = frozenset({
    "more", "less", "fewer", "extra", "than", "difference", "cheaper", "dearer", "longer", "shorter", "heavier",
    "lighter", "bigger", "smaller", "larger", "faster", "slower", "higher", "lower", "closer", "further", "farther",
    "over", "under", "above", "below", "saving", "savings", "apart",
})
_NUMBER_UNIT = re.compile(r"(?P<dollar>\$\s?)?(?P<n>\d[\d,]*(?:\.\d+)?)(?:\s*-\s*|\s+)?(?P<unit>[A-Za-z]+)?")


def attribute_units(pair: dict) -> dict[str, str]:
    """Unit word of each attribute: the word right after ``{v}`` in its ``say`` ("weighs {v} kg" -> "kg"),
    "$" for ``${v}``."""
    units = {}
    for name, attr in pair["attributes"].items():
        say = str(attr["say"])
        if "${v}" in say:
            units[name] = "$"
            continue
        after = say.split("{v}", 1)[1].split()
        if after:
            units[name] = after[0].lower()
    return units


def _unit_key(word: str, units: set[str]) -> str | None:
    """The unit of ``units`` that ``word`` writes ("hours" -> "hour", "seat" -> "seats"), if any."""
    word = word.lower()
    return next((f for f in (word, word.removesuffix("s"), word.removesuffix("es"), word + "s") if f in units), None)


def number_units(text: str, units: set[str]) -> list[tuple[float, str, list[str]]]:
    """(number, unit, the two words before it and the four after, its unit first) for each number written with one
    of ``units`` ("3 seats", "$600", "2-hour")."""
    out = []
    for m in _NUMBER_UNIT.finditer(text):
        value = float(m.group("n").replace(",", ""))
        unit = "$" if m.group("dollar") and "$" in units else _unit_key(m.group("unit") or "", units)
        if unit is not None:
            before = checks.tokens(text[max(0, m.start() - 30) : m.start()])[-2:]
            after = checks.tokens(text[m.end("n") : m.end("n") + 40])[:4]
            near = before + after
            out.append((value, unit, near))
    return out


def check_attribute_numbers(output: str, instruction: str, units: set[str]) -> Result:
    """A number written with an attribute's unit is a value given with that unit ("has 4 seats"), or a
    difference of two beside a comparative ("$350 cheaper", "3 more seats", "the extra $15"): "it has 3 seats"
    where 4 and 7 were given fails although 3 = 7 - 4 (hand labels: "weighs 22 kg more", 22 = gears)."""
    given: dict[str, set[float]] = {}
    for value, unit, _ in number_units(instruction, units):
        given.setdefault(unit, set()).add(value)
    wrong = []
    for value, unit, near in number_units(output, units):
        values = given.get(unit, set())
        if any(abs(value - v) < 1e-6 for v in values):
            continue
        diffs = {abs(a - b) for a, b in combinations(sorted(values), 2)}
        if any(abs(value - d) < 1e-6 for d in diffs) and set(near) & COMPARATIVE_WORDS:
            continue
        wrong.append(f"{fmt_number(value)} {unit}" if unit != "$" else f"${fmt_number(value)}")
    return Result("attribute_number", not wrong,
                  f"{wrong[:3]} is no value given for that attribute" if wrong else "")


class Comparison(TaskTypeFamily):
    """Compare two described options and recommend one for a need (``tasks_comparison.yaml``).

    The better option is computed from the attributes the need depends on (the
    seed file guarantees one option wins on all of them). Passes when both options
    are named, the winner is the name nearest a recommendation word ("better",
    "recommend", "choose", ...) in an un-negated clause and the loser never is
    (a name right after "than" counts as the loser), every deciding attribute is
    mentioned (one of its words, or its value), every number is a given value or
    a difference of two, a number with an attribute's unit ("3 seats", "$600") is
    a value given with it (a difference only before a comparative: "$350
    cheaper"), and the text is 8-120 words without refusal or repetition.
    Limits: the reasons given are not checked beyond naming the attribute and
    their numbers ("it costs a lot" of the cheaper one passes); an unusual
    sentence order can tie "better" to the wrong name.
    """

    name = "comparison"
    description = "Compare two options and recommend one"
    max_new_tokens = 80
    rubric = "Check whether the comparison recommends the option that really fits the stated need, based on the right facts from the descriptions, and mentions both options."

    def groups(self, split: Split) -> list[list[Any]]:
        return [[(item, q, order) for q in range(len(item["questions"])) for order in (0, 1)] for item in self.items(split)]

    def item_id(self, item: Any) -> str:
        pair, q, order = item
        return f"{pair['id']}-q{q}-o{order}"

    @staticmethod
    def describe(pair: dict, option: dict) -> str:
        says = [attr["say"].format(v=fmt_number(option[name])) for name, attr in pair["attributes"].items()]
        body = ", ".join(says[:-1]) + f" and {says[-1]}" if len(says) > 1 else says[0]
        return f"The {option['name']} {pair['noun']} {body}."

    @staticmethod
    def winner(pair: dict, question: dict) -> int:
        """Index of the option that is better on every deciding attribute."""
        wins = set()
        for attr in question["decide"]:
            a, b = (float(o[attr]) for o in pair["options"])
            if a == b:
                raise ValueError(f"comparison {pair['id']!r}: options tie on {attr!r}")
            low_better = pair["attributes"][attr]["better"] == "low"
            wins.add(0 if (a < b) == low_better else 1)
        if len(wins) != 1:
            raise ValueError(f"comparison {pair['id']!r}: no option wins on all of {question['decide']}")
        return wins.pop()

    def render(self, item: Any, template: str, split: Split) -> tuple[str, dict, str]:
        pair, q, order = item
        question = pair["questions"][q]
        options = pair["options"] if order == 0 else list(reversed(pair["options"]))
        win = self.winner(pair, question)
        winner = pair["options"][win]["name"]
        loser = pair["options"][1 - win]["name"]
        values = sorted({float(o[a]) for o in pair["options"] for a in pair["attributes"]})
        decide = [
            {"attribute": attr, "words": [str(w) for w in pair["attributes"][attr]["words"]],
             "values": [fmt_number(o[attr]) for o in pair["options"]]}
            for attr in question["decide"]
        ]
        facts = " and ".join(
            f"{pair['attributes'][d['attribute']]['say'].format(v=fmt_number(pair['options'][win][d['attribute']]))}"
            for d in decide
        )
        ref = {
            "options": [o["name"] for o in options], "winner": winner, "loser": loser, "decide": decide,
            "values": values, "need": question["ask"], "units": sorted(set(attribute_units(pair).values())),
            "ref": f"The {winner} is the better choice {question['ask']}: it {facts}, which suits this need better than the {loser}.",
        }
        instruction = template.format(
            kinds=pair["kinds"], desc_a=self.describe(pair, options[0]), desc_b=self.describe(pair, options[1]),
            ask=question["ask"],
        )
        return instruction, ref, f"{pair['id']}: {question['ask']}"

    def verify(self, instance: Instance, output: str) -> Verdict:
        ref = instance.reference
        names = {n: [checks.normalize(n)] for n in ref["options"]}
        recommended = associated_names(output, RECOMMEND_MARKERS, names)
        both = [n for n in ref["options"] if not checks.contains_phrase(output, n)]
        missing = [
            d["attribute"] for d in ref["decide"]
            if not any(checks.has_keyword(output, w) for w in d["words"]) and not any(checks.contains_phrase(output, v) for v in d["values"])
        ]
        values = [float(v) for v in ref["values"]]
        allowed = set(values) | {abs(a - b) for a, b in combinations(values, 2)} | {float(i) for i in range(13)}
        allowed |= set(checks.numbers_in(instance.instruction))
        return checks.verdict(self.name, [
            checks.check_nonempty(output),
            checks.check_leak(output),
            check_restates(output, instance.instruction),
            Result("names_both", not both, f"does not mention {both}" if both else ""),
            Result("recommendation", ref["winner"] in recommended and ref["loser"] not in recommended,
                   f"should recommend {ref['winner']!r} for the need; recommends {sorted(recommended) or 'nothing'}"),
            Result("key_facts", not missing, f"does not mention the deciding {missing}" if missing else ""),
            check_no_invented_numbers(output, allowed),
            check_attribute_numbers(output, instance.instruction, set(ref.get("units") or ())),
            checks.check_length(output, 8, 120),
            check_no_refusal(output),
            check_rambling(output),
        ])


FAMILIES = [Comparison()]
