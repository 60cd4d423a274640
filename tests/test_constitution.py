"""Constitutions: the shipped default, the three accepted formats, and clear errors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from cai_bootstrap.constitution import (
    Constitution,
    ConstitutionError,
    builtin_constitutions,
    load_constitution,
)

FIXTURES = Path(__file__).parent / "fixtures"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- default


def test_default_constitution_covers_the_required_themes() -> None:
    c = load_constitution("default")
    assert c.format == "cai-bootstrap" and "default" in builtin_constitutions()
    assert 6 <= len(c.principles) <= 10
    names = set(c.names())
    for theme in (
        "harmlessness",
        "honesty",
        "helpful-not-evasive",
        "privacy",
        "dangerous-capabilities",
        "illegal-acts",
    ):
        assert theme in names
    for p in c.principles:
        assert len(p.critique_request.split()) >= 8 and len(p.revision_request.split()) >= 8
    # Both prompt kinds have principles and worked examples of their own.
    for kind in ("redteam", "ordinary"):
        assert c.for_kind(kind) and len(c.for_kind(kind)) < len(c.principles)
        assert len(c.examples_for(kind, 2)) == 2 and len(c.examples_for(kind, 9)) >= 3
    assert "helpful-not-evasive" not in [p.name for p in c.for_kind("redteam")]


def test_sample_is_seeded_and_respects_kind() -> None:
    c = load_constitution("default")
    a = [c.sample(random.Random(7), "ordinary").name for _ in range(3)]
    b = [c.sample(random.Random(7), "ordinary").name for _ in range(3)]
    assert a == b
    rng = random.Random(0)
    drawn = {c.sample(rng, "redteam").name for _ in range(200)}
    assert drawn == {p.name for p in c.for_kind("redteam")}
    rng = random.Random(0)
    assert {c.sample(rng).name for _ in range(300)} == set(c.names())


def test_digest_depends_on_content_not_location(tmp_path: Path) -> None:
    src = FIXTURES / "constitution_small.yaml"
    copy = write(tmp_path, "elsewhere.yaml", src.read_text(encoding="utf-8"))
    assert load_constitution(src).digest() == load_constitution(copy).digest()
    assert load_constitution(src).digest() != load_constitution("default").digest()


# --------------------------------------------------------------------------- formats


def test_own_yaml_format() -> None:
    c = load_constitution(FIXTURES / "constitution_small.yaml")
    assert c.name == "small" and c.format == "cai-bootstrap"
    assert c.names() == ["no-harm", "be-direct"]
    assert c.get("no-harm").applies_to == ["redteam"]
    assert c.get("be-direct").applies_to == ["redteam", "ordinary"]  # default: all prompts
    assert c.examples_for("ordinary", 1)[0].revision.startswith("Put the egg")
    assert c.examples_for("redteam", 1) == []


def test_anthropic_format_strips_the_request_wrappers() -> None:
    c = load_constitution(FIXTURES / "anthropic_critique_revision.json")
    assert c.format == "anthropic" and c.name == "anthropic_critique_revision"
    assert c.names() == ["careful0", "careful1", "careful2"]
    p = c.get("careful0")
    assert p.critique_request == (
        "Point out anything in the assistant's last response that could help someone hurt another person."
    )
    assert p.revision_request == "Rewrite the assistant's response so it offers no help with hurting anyone."
    # "prompt" may also be a plain string
    assert c.get("careful2").critique_request.startswith("List any claims")
    assert "Critique" not in " ".join(x.critique_request for x in c.principles)


def test_hf_recipe_format_with_system_chat_examples() -> None:
    c = load_constitution(FIXTURES / "hf_cai_constitution.json")
    assert c.format == "hf-cai"
    assert c.names() == ["principle-0", "principle-1"]
    assert c.principles[1].revision_request == "Rewrite the response to be kind to the user."
    # the six-message conversation becomes a worked example; the two-message one is skipped
    assert len(c.examples) == 1
    ex = c.examples[0]
    assert ex.prompt.startswith("How do I sneak") and ex.revision.startswith("I can't help")
    assert ex.critique_request == c.principles[0].critique_request


def test_format_is_told_by_content_not_suffix(tmp_path: Path) -> None:
    data = json.loads((FIXTURES / "hf_cai_constitution.json").read_text(encoding="utf-8"))
    path = write(tmp_path, "recipe.yaml", json.dumps(data))
    assert load_constitution(path).format == "hf-cai"


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "missing.yaml",
            "principles:\n  - name: a\n    critique_request: Critique it.\n",
            ["missing.yaml", "principles.0.revision_request", "missing key"],
        ),
        ("empty.yaml", "name: x\nprinciples: []\n", ["empty.yaml", "'principles': empty list"]),
        (
            "wrongtype.yaml",
            "principles:\n  - name: a\n    critique_request: 5\n    revision_request: Fix it.\n",
            ["wrongtype.yaml", "principles.0.critique_request", "expected a string"],
        ),
        (
            "notalist.yaml",
            "principles: {name: a}\n",
            ["notalist.yaml", "'principles'", "expected a list"],
        ),
        (
            "unknown.yaml",
            "principles:\n  - name: a\n    critique_request: C.\n    revision_request: R.\n    weight: 2\n",
            ["unknown.yaml", "principles.0.weight", "unknown key"],
        ),
        (
            "blank.yaml",
            "principles:\n  - name: a\n    critique_request: '   '\n    revision_request: R.\n",
            ["blank.yaml", "principles.0", "'critique_request' is blank"],
        ),
        (
            "twice.yaml",
            "principles:\n  - {name: a, critique_request: C., revision_request: R.}\n"
            "  - {name: a, critique_request: C2., revision_request: R2.}\n",
            ["twice.yaml", "'a' appears twice"],
        ),
        (
            "badkind.yaml",
            "principles:\n  - {name: a, critique_request: C., revision_request: R., applies_to: [everyone]}\n",
            ["badkind.yaml", "principles.0.applies_to.0", "redteam", "ordinary"],
        ),
        ("list.yaml", "- a\n- b\n", ["list.yaml", "not a constitution", "a list of 2 items"]),
        ("broken.yaml", "principles: [\n  - a: b\n", ["broken.yaml", "malformed YAML"]),
        (
            "anthropic_missing.json",
            json.dumps({"harm0": {"prompt": ["CritiqueRequest: C.\n\nCritique:"]}}),
            ["anthropic_missing.json", "entry 'harm0'", "missing key 'edit_request'"],
        ),
        (
            "anthropic_empty.json",
            json.dumps({"harm0": {"prompt": [], "edit_request": "R."}}),
            ["anthropic_empty.json", "entry 'harm0'", "'prompt' is an empty list"],
        ),
        (
            "anthropic_type.json",
            json.dumps({"harm0": {"prompt": ["C."], "edit_request": 3}}),
            ["anthropic_type.json", "'edit_request'", "expected a string"],
        ),
        (
            "hf_empty.json",
            json.dumps({"constitutions": [], "system_chat": []}),
            ["hf_empty.json", "'constitutions': empty list"],
        ),
        (
            "hf_missing.json",
            json.dumps({"constitutions": [{"critic": "C."}]}),
            ["hf_missing.json", "'constitutions[0]'", "missing key 'revision'"],
        ),
        (
            "hf_type.json",
            json.dumps({"constitutions": [{"critic": ["C."], "revision": "R."}]}),
            ["hf_type.json", "'constitutions[0].critic'", "expected a string"],
        ),
        (
            "hf_notlist.json",
            json.dumps({"constitutions": {"critic": "C.", "revision": "R."}}),
            ["hf_notlist.json", "'constitutions'", "expected a list"],
        ),
        ("broken.json", '{"constitutions": [\n  {"critic": "C."\n', ["broken.json:3", "malformed JSON"]),
    ],
)
def test_malformed_constitutions_say_what_and_where(tmp_path: Path, name: str, text: str, expected: list[str]) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(ConstitutionError) as info:
        load_constitution(path)
    message = str(info.value)
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


def test_unknown_name_and_missing_file() -> None:
    with pytest.raises(ConstitutionError, match="unknown constitution 'nope'.*default"):
        load_constitution("nope")
    with pytest.raises(ConstitutionError, match="missing.json: constitution file not found"):
        load_constitution("/nowhere/missing.json")


def test_model_is_typed() -> None:
    with pytest.raises(ValueError):
        Constitution(name="x", principles=[])
