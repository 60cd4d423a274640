"""Task type code_generation: write a Python function, verified by running it.

The generated code runs in `cai_bootstrap.tasks.sandbox` (own process, no
network, CPU/memory/time limits, private temp dir, stripped environment); the
function is called on each test's arguments there and the results are compared
here, outside the sandbox, with the expected values the sandbox never sees.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from cai_bootstrap.tasks import checks
from cai_bootstrap.tasks.base import Instance, Split, Verdict
from cai_bootstrap.tasks.checks import Result
from cai_bootstrap.tasks.sandbox import Limits, run_python
from cai_bootstrap.tasks.types.common import TaskTypeFamily, check_no_refusal

#: Limits for one verification run (small functions on small inputs).
CODE_LIMITS = Limits(wall_s=10.0, cpu_s=3, memory_mb=256, max_output=4000)
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n?(.*?)(?:```|$)", re.DOTALL)
_CODE_START = re.compile(r"^\s*(def|import|from|class|@)\b", re.MULTILINE)
MAX_CODE_CHARS = 8000


def extract_code(text: str) -> str:
    """The code in a model's answer: the first fenced block, else from the first ``def``/``import`` line.

    Trailing prose after the code is dropped line by line until the rest parses.
    """
    text = text.replace("\r\n", "\n")
    m = _FENCE.search(text)
    if m:
        code = m.group(2)
    else:
        start = _CODE_START.search(text)
        code = text[start.start():] if start else ""
    code = code.strip("\n")[:MAX_CODE_CHARS]
    if not code.strip():
        return ""
    lines = code.split("\n")
    for end in range(len(lines), 0, -1):
        candidate = "\n".join(lines[:end]).rstrip() + "\n"
        try:
            ast.parse(candidate)
            return candidate
        except (SyntaxError, ValueError):
            continue
    return code


def defines(code: str, name: str) -> bool:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name for node in tree.body)


class CodeGeneration(TaskTypeFamily):
    """Write a small Python function (``tasks_code_generation.yaml``), checked by running tests.

    Passes when the answer contains Python code (fenced or bare) that parses,
    defines the named top-level function, and returns the expected value for
    every test case when run in the sandbox. Score = share of tests passed.
    Limits: only the listed cases are tested (a solution that special-cases them
    passes); style, efficiency and docstrings are not judged; code that needs a
    module outside `sandbox.PRELOAD` may fail to import there.
    """

    name = "code_generation"
    description = "Write a small Python function"
    max_new_tokens = 128
    rubric = "Check whether the code is valid Python, defines the requested function with the right name, and returns the right result for every input, including edge cases."

    def groups(self, split: Split) -> list[list[Any]]:
        return [self.items(split)]

    def item_id(self, item: Any) -> str:
        return str(item["name"])

    def render(self, item: dict, template: str, split: Split) -> tuple[str, dict, str]:
        tests = [[list(args), expected] for args, expected in item["tests"]]
        ref = {
            "function": item["name"], "signature": item["signature"], "tests": tests,
            "ref": f"```python\n{item['solution'].rstrip()}\n```",
        }
        instruction = template.format(signature=item["signature"], task=item["task"], name=item["name"])
        return instruction, ref, str(item["name"])

    def verify(self, instance: Instance, output: str) -> Verdict:
        ref = instance.reference
        name = ref["function"]
        results = [checks.check_nonempty(output), checks.check_leak(output), check_no_refusal(output)]
        code = extract_code(output)
        results.append(Result("code", bool(code.strip()), "no Python code found"))
        parses = True
        try:
            ast.parse(code)
        except (SyntaxError, ValueError) as exc:
            parses = False
            results.append(Result("syntax", False, f"does not parse: {exc.__class__.__name__}"))
        if parses:
            results.append(Result("defines", defines(code, name), f"no top-level function named {name!r}"))
        if all(r.ok for r in results):
            run = run_python(code, [(name, args) for args, _ in ref["tests"]], [e for _, e in ref["tests"]], CODE_LIMITS)
            failed = [(i, c) for i, c in enumerate(run.cases) if not c.ok]
            detail = ""
            if failed:
                i, c = failed[0]
                args = ref["tests"][i][0]
                detail = f"{len(failed)}/{len(run.cases)} tests fail; {name}(*{args!r}): {c.error or 'wrong result'}"
                if c.error == "wrong result":
                    detail += f", got {c.got!r}"
            verdict = checks.verdict(self.name, results + [Result("tests", not failed, detail)])
            if failed:
                share = run.passed / max(len(run.cases), 1)
                verdict = verdict.model_copy(update={"score": round(share, 3)})
            return verdict
        return checks.verdict(self.name, results)


FAMILIES = [CodeGeneration()]
