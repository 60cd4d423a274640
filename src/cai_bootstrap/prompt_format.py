"""The project's one prompt format.

A base model has no chat template, so every role (answerer, judge, reviser, ...)
and every trained stage model speaks this plain-text format:

    ### Instruction:
    {instruction}

    ### Response:
    {response}<eos>

Few-shot prompts for a base model are several filled examples separated by a
blank line, followed by an open one. Generation stops at EOS or at the start of
the next "###" header, so an untrained model cannot ramble into a new example.
"""

from __future__ import annotations

INSTRUCTION_HEADER = "### Instruction:\n"
RESPONSE_HEADER = "\n\n### Response:\n"
#: Stop strings that end a response in this format (the next header).
STOP_SEQUENCES: tuple[str, ...] = ("\n###", "###")


def format_prompt(instruction: str) -> str:
    """The prompt a model sees for one instruction (ends right before the response)."""
    return f"{INSTRUCTION_HEADER}{instruction.strip()}{RESPONSE_HEADER}"


def format_example(instruction: str, response: str) -> str:
    """A complete example, as used inside few-shot prompts (no EOS token)."""
    return format_prompt(instruction) + response.strip()


def format_few_shot(instruction: str, shots: list[tuple[str, str]]) -> str:
    """Few-shot prompt: filled examples, then the open instruction."""
    parts = [format_example(i, r) for i, r in shots]
    parts.append(format_prompt(instruction))
    return "\n\n".join(parts)


def clean_response(text: str, extra_stops: tuple[str, ...] = ()) -> str:
    """Cut a raw continuation at the first stop string and strip whitespace."""
    cut = len(text)
    for stop in STOP_SEQUENCES + tuple(extra_stops):
        idx = text.find(stop)
        if idx != -1:
            cut = min(cut, idx)
    return text[:cut].strip()
