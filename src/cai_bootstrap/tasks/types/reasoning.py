"""Task types with computed answers: math_problems and analysis (comparison: `types.comparison`).

The numbers of a case are drawn from hand-written ranges; what a right answer must contain (the
result, the peak and the low point) is computed from them.
"""

from __future__ import annotations

import ast
import operator
import random
import re
from functools import lru_cache
from itertools import combinations, pairwise
from typing import Any

from cai_bootstrap.tasks import bank, checks
from cai_bootstrap.tasks.base import Instance, Split, Verdict
from cai_bootstrap.tasks.checks import NEGATIONS, Result
from cai_bootstrap.tasks.types.common import (
    TaskTypeFamily,
    check_no_invented_numbers,
    check_no_refusal,
    check_rambling,
    check_restates,
    clauses,
    fmt_number,
    nearest_name,
    ordered_numbers,
)

# ---------------------------------------------------------------------------- math_problems

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}


def evaluate(expr: str, env: dict[str, float]) -> float:
    """Arithmetic over names and numbers (+ - * / // %, parentheses); nothing else parses."""

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.Name) and node.id in env:
            return env[node.id]
        raise ValueError(f"unsupported expression {expr!r}")

    return ev(ast.parse(expr, mode="eval"))


_ANSWER_MARK = re.compile(
    r"\banswer\b\s*(?:is|was|would be|will be|=|:)?\s*[:=]?\s*(?:about\s+)?\$?\s*(-?\d[\d,]*(?:\.\d+)?)", re.IGNORECASE
)


def final_number(text: str) -> float | None:
    """The stated final answer: the number right after the last "answer (is)", else the last number."""
    marked = _ANSWER_MARK.findall(text)
    if marked:
        return float(marked[-1].replace(",", ""))
    nums = ordered_numbers(text)
    return nums[-1] if nums else None


class ScenarioVariants(TaskTypeFamily):
    """Families whose items are (scenario, k): ``variants[split]`` numeric draws of each scenario."""

    def groups(self, split: Split) -> list[list[Any]]:
        count = int(self.data["variants"][split])
        return [[(item, k) for k in range(count)] for item in self.items(split)]

    def item_id(self, item: Any) -> str:
        scenario, k = item
        return f"{scenario['id']}-v{k}"


class MathProblems(ScenarioVariants):
    """Word problems with computed answers (``tasks_math_problems.yaml``).

    Each scenario is drawn with several number sets; the answer is computed from
    the scenario's expression. Passes when the final answer (the number after the
    last "answer"/"total"/"result", else the last number in the text) equals the
    computed one, the output is 1-120 words, and it is not a refusal or
    repetitive. Limits: the working is not checked, so a right final number after
    wrong steps passes; an answer that ends with an unrelated number (e.g. "in
    2 steps") fails.
    """

    name = "math_problems"
    description = "Solve an arithmetic word problem"
    max_new_tokens = 72
    rubric = "Check whether the calculation uses the right operations on the numbers in the problem and ends with the correct final answer."

    def draw(self, scenario: dict, k: int, split: str) -> dict[str, float]:
        """Values of the scenario's variables for variant ``k``: a positive whole answer, and
        a number set that no earlier variant of the scenario has."""
        return self._draws(scenario["id"], split, k + 1)[k]

    @lru_cache(maxsize=256)  # noqa: B019 - families are module-level singletons
    def _draws(self, scenario_id: str, split: str, count: int) -> list[dict[str, float]]:
        scenario = next(s for s in self.items(split) if s["id"] == scenario_id)  # type: ignore[arg-type]
        out: list[dict[str, float]] = []
        seen: set[tuple] = set()
        for k in range(count):
            rng = random.Random(bank.stable_hash("math", scenario_id, split, k))
            for _ in range(500):
                env: dict[str, float] = {name: rng.randint(int(lo), int(hi)) for name, (lo, hi) in scenario["vars"].items()}
                key = tuple(sorted(env.items()))
                if key in seen:
                    continue
                for name, expr in (scenario.get("let") or {}).items():
                    env[name] = evaluate(str(expr), env)
                answer = evaluate(str(scenario["answer"]), env)
                if answer > 0 and float(answer).is_integer():
                    env["answer"] = answer
                    seen.add(key)
                    out.append(env)
                    break
            else:
                raise ValueError(f"math scenario {scenario_id!r}: no new whole positive answer in 500 draws")
        return out

    def render(self, item: Any, template: str, split: Split) -> tuple[str, dict, str]:
        scenario, k = item
        env = self.draw(scenario, k, split)
        shown = {name: fmt_number(v) for name, v in env.items()}
        problem = scenario["text"].format(**shown)
        ref = {
            "problem": problem, "answer": env["answer"], "values": {n: v for n, v in env.items() if n != "answer"},
            "ref": scenario["steps"].format(**shown),
        }
        return template.format(problem=problem), ref, str(scenario["id"])

    def verify(self, instance: Instance, output: str) -> Verdict:
        expected = float(instance.reference["answer"])
        got = final_number(output)
        ok = got is not None and abs(got - expected) < 1e-6
        detail = "" if ok else (f"final answer {fmt_number(got)}, want {fmt_number(expected)}" if got is not None
                                else f"no number found, want {fmt_number(expected)}")
        return checks.verdict(self.name, [
            checks.check_nonempty(output),
            checks.check_leak(output),
            Result("answer", ok, detail),
            checks.check_length(output, 1, 120),
            check_no_refusal(output),
            check_rambling(output),
        ])


# ---------------------------------------------------------------------------- analysis

UP_WORDS = ("increase", "increased", "increasing", "increases", "rise", "rose", "rising", "rises", "risen", "grew",
            "grow", "growing", "grows", "growth", "upward", "upwards", "up", "climb", "climbed", "climbing", "gain",
            "gained", "improved", "improving", "higher")
DOWN_WORDS = ("decrease", "decreased", "decreasing", "decreases", "decline", "declined", "declining", "declines",
              "fell", "fall", "falling", "falls", "fallen", "drop", "dropped", "dropping", "drops", "downward",
              "downwards", "down", "shrank", "shrink", "shrinking", "sank", "lower", "reduced", "reduction", "dwindled")
HIGH_MARKERS = ("highest", "peak", "peaked", "peaks", "maximum", "most", "largest", "biggest", "best", "greatest",
                "record", "top", "busiest", "strongest", "wettest")
LOW_MARKERS = ("lowest", "minimum", "least", "fewest", "smallest", "worst", "bottom", "trough", "weakest",
               "quietest", "driest", "low point")
TREND_MARKERS = ("overall", "trend", "general", "generally", "whole", "throughout", "steadily", "steady", "over time",
                 "overall trend", "over the period", "in total", "from")
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december")
_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def label_forms(label: str) -> list[str]:
    """Normalised ways to write a label ("September" -> "september", "sept", "sep")."""
    norm = checks.normalize(label)
    forms = [norm]
    if norm in _MONTHS and norm != "may":
        forms += [norm[:3]] + (["sept"] if norm == "september" else [])
    if norm in _DAYS:
        forms += [norm[:3]]
    m = re.fullmatch(r"week (\d+)", norm)
    if m:
        forms += [f"wk {m.group(1)}", f"w{m.group(1)}"]
    return forms


def _has(toks: list[str], words: tuple[str, ...]) -> list[int]:
    """Positions in ``toks`` where one of ``words`` (single or multi-word) starts."""
    out = []
    for w in words:
        out += checks.phrase_positions(toks, w)
    return sorted(out)


def associated_names(text: str, markers: tuple[str, ...], names: dict[str, list[str]]) -> set[str]:
    """Names that sit nearest to an un-negated marker in its clause.

    A marker is negated when a negation word is among the three tokens before it
    ("not the highest", "would not recommend").
    """
    found: set[str] = set()
    for sentence in checks.sentences(text):
        for clause in clauses(sentence):
            for pos in _has(clause, markers):
                if set(clause[max(0, pos - 3) : pos]) & NEGATIONS:
                    continue
                name = nearest_name(clause, pos, names)
                if name is not None:
                    found.add(name)
    return found


def direction_verdict(text: str, direction: str) -> Result:
    """The overall direction is stated (``up``/``down``), and not contradicted where the trend is described."""
    right, wrong = (UP_WORDS, DOWN_WORDS) if direction == "up" else (DOWN_WORDS, UP_WORDS)
    trend_clauses = [
        c for s in checks.sentences(text) if _has(checks.tokens(s), TREND_MARKERS) for c in clauses(s)
    ]
    scope = trend_clauses or [c for s in checks.sentences(text) for c in clauses(s)]
    has_right = any(_has(c, right) and not set(c) & NEGATIONS for c in scope)
    only_wrong = [c for c in scope if _has(c, wrong) and not _has(c, right) and not set(c) & NEGATIONS]
    if trend_clauses:
        ok = has_right and not only_wrong
    else:
        ok = has_right and not any(_has(c, wrong) for c in scope)
    word = "rose / increased" if direction == "up" else "fell / decreased"
    return Result("direction", ok, f"the overall direction is {direction} (expected a word like {word!r}, and no contrary one)")


class Analysis(ScenarioVariants):
    """Analyse a small data series (``tasks_analysis.yaml``): trend, highest and lowest.

    Each case draws a series from the scenario's ranges with a trend and one
    planted spike or dip, so the facts are computed: the overall direction
    (first vs last value), the label with the highest and with the lowest
    value. Passes when the direction is stated (and not contradicted where the
    trend is described), the highest label is the one nearest a superlative
    such as "highest"/"peak" in an un-negated clause (and no other label is),
    the same for the lowest, every number is a data value, a label, a small
    count or a difference, sum, mean or percentage change of the data, and the
    text is 10-120 words, no refusal, no repetition. Limits: "highest" tied to
    the wrong label by an unusual sentence order can fail a right analysis;
    claims beyond these three facts are not checked except for their numbers.
    """

    name = "analysis"
    description = "Analyse a small data series"
    max_new_tokens = 80
    rubric = "Check whether the analysis states the overall trend correctly, names the highest and the lowest points correctly, and uses only numbers from the data."

    def series(self, scenario: dict, k: int, split: str) -> list[int]:
        labels = scenario["labels"]
        n = len(labels)
        rng = random.Random(bank.stable_hash("analysis", scenario["id"], split, k))
        for _ in range(500):
            up = (k % 2 == 0) if rng.random() < 0.8 else (k % 2 == 1)
            start = rng.randint(*scenario["start"])
            step = rng.randint(*scenario["step"])
            sign = 1 if up else -1
            values = [start + sign * step * i + rng.randint(-step // 3, step // 3) for i in range(n)]
            p = rng.randint(1, n - 2)
            if rng.random() < 0.5:
                values[p] = max(values) + rng.randint(step, 2 * step)
            else:
                values[p] = min(values) - rng.randint(step, 2 * step)
            if min(values) <= 0 or len(set(values)) != n:
                continue
            if abs(values[-1] - values[0]) < max(step, 0.15 * values[0]):
                continue
            if values.count(max(values)) != 1 or values.count(min(values)) != 1:
                continue
            return values
        raise ValueError(f"analysis scenario {scenario['id']!r}: no clean series in 500 draws")

    def render(self, item: Any, template: str, split: Split) -> tuple[str, dict, str]:
        scenario, k = item
        labels = [str(lab) for lab in scenario["labels"]]
        values = self.series(scenario, k, split)
        data = ", ".join(f"{lab}: {v}" for lab, v in zip(labels, values))
        hi, lo = labels[values.index(max(values))], labels[values.index(min(values))]
        direction = "up" if values[-1] > values[0] else "down"
        ref = {
            "labels": labels, "values": values, "highest": hi, "lowest": lo, "direction": direction,
            "ref": (
                f"The figures {'rose' if direction == 'up' else 'fell'} overall, from {values[0]} in {labels[0]} "
                f"to {values[-1]} in {labels[-1]}. The highest was {hi} with {max(values)}, and the lowest was "
                f"{lo} with {min(values)}."
            ),
        }
        instruction = template.format(subject=scenario["subject"], data=data, period=scenario["period"])
        return instruction, ref, str(scenario["id"])

    @staticmethod
    def allowed_numbers(ref: dict) -> set[float]:
        values = [float(v) for v in ref["values"]]
        allowed = set(values) | {float(i) for i in range(13)}
        allowed |= {abs(a - b) for a, b in combinations(values, 2)}
        allowed |= {sum(values), round(sum(values) / len(values)), round(sum(values) / len(values), 1)}
        for lab in ref["labels"]:
            allowed |= set(checks.numbers_in(lab))
        first, last = values[0], values[-1]
        for a, b in [(first, last), (min(values), max(values)), *pairwise(values)]:
            if a:
                change = abs(b - a) / a * 100
                allowed |= {round(change), round(change, 1), float(int(change))}
        return allowed

    def verify(self, instance: Instance, output: str) -> Verdict:
        ref = instance.reference
        names = {lab: label_forms(lab) for lab in ref["labels"]}
        high = associated_names(output, HIGH_MARKERS, names)
        low = associated_names(output, LOW_MARKERS, names)
        return checks.verdict(self.name, [
            checks.check_nonempty(output),
            checks.check_leak(output),
            check_restates(output, instance.instruction),
            direction_verdict(output, ref["direction"]),
            Result("highest", high == {ref["highest"]},
                   f"the highest is {ref['highest']!r}; the text ties 'highest/peak' to {sorted(high) or 'nothing'}"),
            Result("lowest", low == {ref["lowest"]},
                   f"the lowest is {ref['lowest']!r}; the text ties 'lowest' to {sorted(low) or 'nothing'}"),
            check_no_invented_numbers(output, self.allowed_numbers(ref)),
            checks.check_length(output, 10, 120),
            check_no_refusal(output),
            check_rambling(output),
        ])


FAMILIES = [MathProblems(), Analysis()]
