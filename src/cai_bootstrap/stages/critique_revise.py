"""Critique -> revision prompts, shared by the kinds that revise (``task``, ``constitutional``).

The shape of inspect_ai's ``self_critique`` and the CAI recipe: the critic sees the request
and the response (and what to look for) and writes a critique; the reviser sees the
request, the response and the critique and writes the new response. Each kind brings its
own templates and worked examples; filling them, and cleaning the reviser's reply, is here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from cai_bootstrap.prompt_format import format_few_shot


def templated_prompt(
    template: str, case: Mapping[str, str], demos: Sequence[tuple[Mapping[str, str], str]] = ()
) -> str:
    """``template`` filled for the open case, after the same template filled for each demo and its answer."""
    return format_few_shot(template.format(**case), [(template.format(**fields), answer) for fields, answer in demos])


def strip_label(text: str, label: re.Pattern[str]) -> str:
    """A reply without the label a model tends to open it with ("Revised response: ...")."""
    return label.sub("", text.strip()).strip()
