"""Constitutions: principles with a critique request and a revision request.

`load_constitution(name_or_path)` reads three formats and returns one typed
`Constitution`:

* **ours** (YAML or JSON): ``{name, description, principles: [{name,
  critique_request, revision_request, applies_to}], examples: [...]}``; the
  built-in ``default`` lives in ``cai_bootstrap/constitutions/default.yaml``;
* **Anthropic** ``CritiqueRevisionInstructions.json`` (the CAI paper's repo):
  ``{"harmful0": {"prompt": ["\\n\\nCritiqueRequest: ...\\n\\nCritique:"],
  "edit_request": "\\n\\nRevisionRequest: ...\\n\\nRevision:"}, ...}``; the
  ``CritiqueRequest:`` / ``Critique:`` wrappers are stripped;
* **Hugging Face CAI recipe** (llm-swarm ``examples/constitutional-ai``):
  ``{"constitutions": [{"critic": ..., "revision": ...}], "system_chat": [[...]]}``;
  each ``system_chat`` conversation of six messages (request, answer, critique
  request, critique, revision request, revision) becomes a worked example.

The format is told by the content, not the file suffix. A malformed file raises
`ConstitutionError` naming the file, the place and the problem.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cai_bootstrap.config import PACKAGE_DIR, format_validation_error

PromptKind = Literal["redteam", "ordinary"]
PROMPT_KINDS: tuple[PromptKind, ...] = ("redteam", "ordinary")
BUILTIN_DIR = PACKAGE_DIR / "constitutions"


class ConstitutionError(ValueError):
    """A constitution file is missing or malformed; the message names file and problem."""


class Principle(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    critique_request: str = Field(min_length=1)
    revision_request: str = Field(min_length=1)
    #: Which prompts the principle is drawn for (default: all).
    applies_to: list[PromptKind] = Field(default_factory=lambda: list(PROMPT_KINDS), min_length=1)

    @model_validator(mode="after")
    def _not_blank(self) -> Principle:
        for field in ("name", "critique_request", "revision_request"):
            if not getattr(self, field).strip():
                raise ValueError(f"'{field}' is blank")
        return self


class Demonstration(BaseModel):
    """A worked critique -> revision example shown to the critic and reviser (few-shot)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: str = Field(min_length=1)
    response: str = Field(min_length=1)
    critique_request: str = Field(min_length=1)
    critique: str = Field(min_length=1)
    revision_request: str = Field(min_length=1)
    revision: str = Field(min_length=1)
    #: Which prompts the example is shown for (default: all).
    applies_to: list[PromptKind] = Field(default_factory=lambda: list(PROMPT_KINDS), min_length=1)


class Constitution(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    description: str = ""
    principles: list[Principle] = Field(min_length=1)
    examples: list[Demonstration] = Field(default_factory=list)
    #: Where it was loaded from and in which format (set by `load_constitution`).
    source: str = ""
    format: Literal["cai-bootstrap", "anthropic", "hf-cai"] = "cai-bootstrap"

    @model_validator(mode="after")
    def _unique_names(self) -> Constitution:
        seen: set[str] = set()
        for p in self.principles:
            if p.name in seen:
                raise ValueError(f"principle name {p.name!r} appears twice")
            seen.add(p.name)
        return self

    def for_kind(self, kind: PromptKind | None) -> list[Principle]:
        """Principles that apply to ``kind`` prompts (all of them when none does)."""
        if kind is None:
            return list(self.principles)
        return [p for p in self.principles if kind in p.applies_to] or list(self.principles)

    def examples_for(self, kind: PromptKind | None, k: int) -> list[Demonstration]:
        """The first ``k`` worked examples shown for ``kind`` prompts."""
        return [ex for ex in self.examples if kind is None or kind in ex.applies_to][:k]

    def sample(self, rng: random.Random, kind: PromptKind | None = None) -> Principle:
        """Draw one principle uniformly (among those for ``kind``, when given)."""
        return rng.choice(self.for_kind(kind))

    def get(self, name: str) -> Principle:
        for p in self.principles:
            if p.name == name:
                return p
        raise KeyError(f"constitution {self.name!r} has no principle {name!r}; has: {', '.join(self.names())}")

    def names(self) -> list[str]:
        return [p.name for p in self.principles]

    def digest(self) -> str:
        """Content hash of principles and examples (not of where the file lies)."""
        body = self.model_dump(include={"principles", "examples"})
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


# --------------------------------------------------------------------------- loading


def builtin_constitutions() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def constitution_path(name_or_path: str | Path) -> Path:
    """A built-in name (``default``) or a file path."""
    path = Path(name_or_path)
    if path.suffix.lower() in (".yaml", ".yml", ".json") or path.exists():
        if not path.is_file():
            raise ConstitutionError(f"{path}: constitution file not found")
        return path
    builtin = BUILTIN_DIR / f"{name_or_path}.yaml"
    if not builtin.is_file():
        raise ConstitutionError(
            f"unknown constitution {str(name_or_path)!r}; built-in: {', '.join(builtin_constitutions())}, "
            "or pass a .yaml/.json path"
        )
    return builtin


def _read(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConstitutionError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8") from None
    except OSError as exc:
        raise ConstitutionError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConstitutionError(f"{path}:{exc.lineno}:{exc.colno}: malformed JSON: {exc.msg}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConstitutionError(f"{path}{where}: malformed YAML: {problem}") from None


def detect_format(data: Any) -> str:
    """``cai-bootstrap``, ``anthropic`` or ``hf-cai`` from the parsed content."""
    if isinstance(data, dict):
        if "principles" in data:
            return "cai-bootstrap"
        if "constitutions" in data:
            return "hf-cai"
        if data and all(isinstance(v, dict) and ("prompt" in v or "edit_request" in v) for v in data.values()):
            return "anthropic"
    raise ValueError(
        "not a constitution: expected a mapping with 'principles' (cai-bootstrap YAML), "
        "a mapping with 'constitutions' (Hugging Face CAI recipe JSON), or a mapping of entries "
        "each with 'prompt' and 'edit_request' (Anthropic CritiqueRevisionInstructions.json); "
        f"got {_describe(data)}"
    )


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        keys = ", ".join(repr(k) for k in list(value)[:5])
        return f"a mapping with keys {keys}" if value else "an empty mapping"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    return f"{type(value).__name__} {value!r}"[:80]


_WRAPPERS = re.compile(r"^\s*(CritiqueRequest|RevisionRequest)\s*:\s*|\s*(Critique|Revision)\s*:\s*$")


def _unwrap(text: str) -> str:
    """Strip Anthropic's ``\\n\\nCritiqueRequest: ... \\n\\nCritique:`` scaffolding."""
    return _WRAPPERS.sub("", text.strip()).strip()


def _require_str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where}: expected a string, got {_describe(value)}")
    if not value.strip():
        raise ValueError(f"{where}: empty string")
    return value


def _from_anthropic(data: dict, stem: str) -> dict:
    principles = []
    for key, entry in data.items():
        missing = [k for k in ("prompt", "edit_request") if k not in entry]
        if missing:
            raise ValueError(
                f"entry {key!r}: missing key {missing[0]!r} (each entry needs 'prompt' and 'edit_request')"
            )
        prompt = entry["prompt"]
        if isinstance(prompt, list):
            if not prompt:
                raise ValueError(f"entry {key!r}: 'prompt' is an empty list")
            prompt = prompt[0]
        critique = _require_str(prompt, f"entry {key!r}: 'prompt'")
        revision = _require_str(entry["edit_request"], f"entry {key!r}: 'edit_request'")
        principles.append(
            {"name": str(key), "critique_request": _unwrap(critique), "revision_request": _unwrap(revision)}
        )
    return {"name": stem, "description": "Anthropic CritiqueRevisionInstructions", "principles": principles}


def _from_hf(data: dict, stem: str) -> dict:
    items = data["constitutions"]
    if not isinstance(items, list):
        raise ValueError(f"'constitutions': expected a list of {{critic, revision}} entries, got {_describe(items)}")
    if not items:
        raise ValueError("'constitutions': empty list (need at least one {critic, revision} entry)")
    principles = []
    for i, entry in enumerate(items):
        if not isinstance(entry, dict):
            raise ValueError(
                f"'constitutions[{i}]': expected a mapping with 'critic' and 'revision', got {_describe(entry)}"
            )
        missing = [k for k in ("critic", "revision") if k not in entry]
        if missing:
            raise ValueError(f"'constitutions[{i}]': missing key {missing[0]!r}")
        principles.append(
            {
                "name": str(entry.get("name") or f"principle-{i}"),
                "critique_request": _require_str(entry["critic"], f"'constitutions[{i}].critic'"),
                "revision_request": _require_str(entry["revision"], f"'constitutions[{i}].revision'"),
            }
        )
    examples = []
    chats = data.get("system_chat") or []
    if not isinstance(chats, list):
        raise ValueError(f"'system_chat': expected a list of conversations, got {_describe(chats)}")
    for i, chat in enumerate(chats):
        # A conversation is usable as a worked example when it is exactly
        # request, answer, critique request, critique, revision request, revision.
        if not (isinstance(chat, list) and len(chat) == 6 and all(isinstance(m, dict) for m in chat)):
            continue
        roles = [m.get("role") for m in chat]
        if roles != ["user", "assistant"] * 3:
            continue
        texts = [m.get("content") for m in chat]
        if not all(isinstance(t, str) and t.strip() for t in texts):
            raise ValueError(f"'system_chat[{i}]': every message needs a non-empty 'content' string")
        fields = ("prompt", "response", "critique_request", "critique", "revision_request", "revision")
        examples.append(dict(zip(fields, texts)))
    return {
        "name": stem,
        "description": "Hugging Face CAI recipe constitution",
        "principles": principles,
        "examples": examples,
    }


def load_constitution(name_or_path: str | Path = "default") -> Constitution:
    """Load a built-in constitution by name or a file in any supported format."""
    path = constitution_path(name_or_path)
    data = _read(path)
    try:
        fmt = detect_format(data)
        if fmt == "anthropic":
            data = _from_anthropic(data, path.stem)
        elif fmt == "hf-cai":
            data = _from_hf(data, path.stem)
        else:
            data = dict(data)
            if "name" not in data:
                data["name"] = path.stem
            if isinstance(data.get("principles"), list) and not data["principles"]:
                raise ValueError("'principles': empty list (need at least one principle)")
    except ValueError as exc:
        raise ConstitutionError(f"{path}: {exc}") from None
    data.update(source=str(path), format=fmt)
    try:
        return Constitution.model_validate(data)
    except ValidationError as exc:
        raise ConstitutionError(_validation_message(str(path), exc)) from None


def _validation_message(source: str, exc: ValidationError) -> str:
    msg = format_validation_error(source, exc)
    # pydantic's wording -> the words a user of a YAML file expects
    return (
        msg.replace("Field required", "missing key")
        .replace("Extra inputs are not permitted", "unknown key")
        .replace("Input should be a valid string", "expected a string")
        .replace("Input should be a valid list", "expected a list")
    )
