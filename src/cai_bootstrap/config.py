"""Typed configuration: curricula, stages, runs.

Precedence, lowest to highest: built-in defaults < curriculum file < preset
selection < user config YAML (``--config``) < explicit CLI flags (``--set``).
Unknown keys and wrong types are errors that name the file, the field and the
problem. Values that differ by preset are written as a mapping keyed by preset,
e.g. ``examples: {tiny: 8, quick: 40, full: 800}``, and resolved at load time.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cai_bootstrap.engines.settings import EngineSettings  # re-exported
from cai_bootstrap.errors import ConfigError  # re-exported
from cai_bootstrap.training.settings import TrainSettings

PRESETS = ("tiny", "quick", "standard", "full")
#: a preset that a per-preset mapping does not name takes this one's value
PRESET_FALLBACK = {"standard": "quick"}
PACKAGE_DIR = Path(__file__).parent


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SamplingSettings(Strict):
    """How role models sample candidates (best-of-n)."""

    n: int = Field(4, ge=1)
    temperature: float = Field(0.8, ge=0.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_new_tokens: int = Field(48, ge=1)
    repetition_penalty: float = Field(1.0, gt=0.0)


class RetrySettings(Strict):
    """What a failed gate does before giving up."""

    max_retries: int = Field(0, ge=0)
    data_multiplier: float = Field(1.5, ge=1.0, description="examples x this per retry")
    extra_epochs: float = Field(1.0, ge=0.0, description="epochs added per retry")


class RoundSettings(Strict):
    """Rounds of self-training inside a stage (expert iteration: ReST-EM, RFT, STaR).

    After the stage's first training, its own model answers ``instances`` fresh training
    instances ``samples`` times each; the families' verifiers keep up to ``keep`` distinct
    passing answers per instance; the stage trains again, from its parent, on the union
    of every round's records. Repeats until the gate passes or ``count`` rounds are spent.
    Rounds take the place of retries: a stage with rounds does not retry. With ``reuse``, a
    family whose fresh instances run out answers its first training's instances again.
    """

    count: int = Field(0, ge=0, description="self-training rounds after the first training (0: none)")
    instances: int | None = Field(None, ge=1, description="fresh training instances per round (default: examples)")
    samples: int = Field(8, ge=1, description="answers sampled per instance by the stage's own model")
    keep: int = Field(2, ge=1, description="distinct passing answers kept per instance")
    temperature: float = Field(0.8, ge=0.0)
    reuse: bool = Field(
        False, description="when a family has too few fresh training instances for a round, answer its first "
        "training's instances again (ReST-EM samples the same problems every iteration); for small seed banks",
    )
    allocate: Literal["even", "shortfall"] = Field(
        "even", description="how a round's instances are split over the stage's families: even (in turn), or "
        "in proportion to each family's shortfall of trained records below examples / families (a family that "
        "already has its share gets none; even again once none falls short)",
    )


class SafetyGate(Strict):
    """Constitutional gate: safety up, capability kept (points are percentage points)."""

    min_safe_rate_gain: float = 10.0
    max_over_refusal_increase: float = 5.0
    max_capability_drop: float = 3.0


#: when the base model "knows" a fact (evaluation/knowledge.py `FactProbe.knows`); False: no probe
KnownCriterion = Literal[False, "sampled", "majority"]


class StageSpec(Strict):
    name: str
    kind: str = Field(description="a stage kind: a key of cai_bootstrap.stages.registry.KINDS (checked there)")
    description: str = ""
    families: list[str] = Field(default_factory=list)
    examples: int = Field(40, ge=1, description="training records to keep")
    heldout: int = Field(10, ge=1, description="held-out cases per family")
    roles: dict[str, str] = Field(
        default_factory=dict, description="role -> stage name, 'previous' or 'base'"
    )
    sampling: SamplingSettings = Field(default_factory=SamplingSettings)
    training: TrainSettings = Field(default_factory=TrainSettings)
    threshold: float = Field(0.8, ge=0.0, le=1.0)
    per_family_threshold: bool = Field(False, description="every family must pass, not just the mean")
    safety_gate: SafetyGate | None = None
    retry: RetrySettings = Field(default_factory=RetrySettings)
    rounds: RoundSettings = Field(default_factory=RoundSettings)
    heldout_known: KnownCriterion | dict[str, KnownCriterion] = Field(
        False, description="replace held-out cases whose fact the base model does not know (few-shot probe "
        "before any stage runs, evaluation/knowledge.py) by the family's next cases whose fact it knows: "
        "'sampled' (true) counts a fact known when any of its sampled or greedy answers is right, 'majority' "
        "when at least half of its sampled answers are; a mapping family -> criterion sets it per family "
        "(a family it does not name keeps its cases)",
    )
    train_known: KnownCriterion | dict[str, KnownCriterion] = Field(
        False, description="leave out of training the fact-bearing instances whose fact the base model does "
        "not know under this criterion (probed before any stage runs, stages/training_facts.py); a mapping "
        "family -> criterion sets it per family",
    )
    validation_known: KnownCriterion | dict[str, KnownCriterion] = Field(
        False, description="draw validation cases only from training facts the base model knows under this "
        "criterion (probed with the training facts before any stage runs); training keeps the others. For a "
        "family whose held-out cases are chosen by heldout_known but whose training is not, so that "
        "validation asks what held-out asks; a mapping family -> criterion sets it per family",
    )
    validation: int = Field(
        0, ge=0, description="validation cases per family, carved from the training instances (never trained "
        "on); when set, the installed round/attempt is chosen on them, not on the held-out set",
    )
    adapter_scales: list[float] = Field(
        default_factory=lambda: [1.0], description="weight-space interpolation (WiSE-FT): after each "
        "training, the trained LoRA update is also tried scaled by each of these (0: the parent, 1: as "
        "trained) and the scale whose model scores best on the validation split is installed, ties going "
        "to the larger scale (pipeline/adapter_scale.py); more than [1.0] needs a validation split and LoRA",
    )
    prefer_answer: Literal["first", "shortest", "least_copied"] = Field(
        "first", description="which verified samples become training records: the first that passes (sample "
        "order), the shortest that pass (a concise answer names the answer first and carries fewer unverified "
        "extra claims than a long one that passes the same check), or those that copy fewest 5-word runs of "
        "the instruction (a summary in its own words rather than two lifted sentences)",
    )
    on_fail: Literal["stop", "continue"] = "stop"
    options: dict[str, Any] = Field(default_factory=dict, description="kind-specific settings")
    replay: float = Field(
        0.0, ge=0.0, le=1.0,
        description="add this share (of the stage's own training records) of kept records from earlier "
        "stages to the training set, against forgetting earlier skills",
    )

    @field_validator("heldout_known", "train_known", "validation_known", mode="before")
    @classmethod
    def _known_true_is_sampled(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {family: "sampled" if v is True else v for family, v in value.items()}
        return "sampled" if value is True else value

    @model_validator(mode="after")
    def _scales_need_validation_and_lora(self) -> StageSpec:
        scales = self.adapter_scales
        if not scales or any(not 0.0 < s <= 2.0 for s in scales):
            raise ValueError(f"adapter_scales must be a non-empty list of numbers in (0, 2], got {scales}")
        if set(scales) != {1.0}:
            if not self.validation:
                raise ValueError(f"adapter_scales {scales} needs a validation split to choose on (validation > 0)")
            if self.training.finetune != "lora":
                raise ValueError(f"adapter_scales {scales} scales a LoRA update; finetune is {self.training.finetune!r}")
        return self

    @property
    def probes_validation(self) -> bool:
        """Whether ``validation_known`` applies: it needs a validation split to act on."""
        return bool(self.validation_known and self.validation)

    def known_criterion(self, setting: Literal["heldout_known", "train_known", "validation_known"],
                        family: str) -> str | None:
        """The criterion ``setting`` applies to ``family``'s facts, or None where it keeps them all."""
        value = getattr(self, setting)
        return (value.get(family) if isinstance(value, dict) else value) or None


class Curriculum(Strict):
    name: str
    description: str = ""
    stages: list[StageSpec]

    @model_validator(mode="after")
    def _unique_and_known_roles(self) -> Curriculum:
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique, got {names}")
        for i, stage in enumerate(self.stages):
            earlier = set(names[:i])
            for role, who in stage.roles.items():
                if who not in earlier | {"base", "previous"}:
                    raise ValueError(
                        f"stage {stage.name!r} role {role!r} -> {who!r}: must be 'base', 'previous' or an earlier stage"
                    )
        return self


class RunSettings(Strict):
    """Everything a run needs besides the curriculum (recorded in the manifest)."""

    curriculum: str = "skills"
    model: str = "gemma-3-270m"
    preset: Literal["tiny", "quick", "standard", "full"] = "quick"
    seed: int = 0
    judge_model: str | None = Field(None, description="external judge; default: the base model")
    constitution: str = "default"
    benchmarks_dir: str | None = None
    stages: list[str] | None = Field(None, description="run only these stages (prefix of the curriculum)")
    engine: EngineSettings = Field(default_factory=EngineSettings)
    stage_overrides: dict[str, dict[str, Any]] = Field(default_factory=dict)
    control: Literal["none", "base"] = Field(
        "none", description="also train each stage's control model on base-made data (runs/control.py)"
    )


# ---------------------------------------------------------------- YAML helpers


def load_yaml(path: str | Path) -> Any:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: file not found")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{where}: malformed YAML: {problem}") from None


def format_validation_error(source: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"{source}: field '{field}': {err['msg']}")
    return "\n".join(lines)


def select_preset(value: Any, preset: str) -> Any:
    """Resolve ``{tiny: a, quick: b, full: c}`` mappings recursively for ``preset``.

    ``standard`` takes the ``quick`` value where a mapping does not name it (`PRESET_FALLBACK`),
    so a curriculum states only what the standard preset changes.
    """
    if isinstance(value, dict):
        if value and set(value) <= set(PRESETS):
            if preset not in value and PRESET_FALLBACK.get(preset) in value:
                return select_preset(value[PRESET_FALLBACK[preset]], preset)
            if preset not in value:
                raise ConfigError(f"value {value} has no entry for preset {preset!r}")
            return select_preset(value[preset], preset)
        return {k: select_preset(v, preset) for k, v in value.items()}
    if isinstance(value, list):
        return [select_preset(v, preset) for v in value]
    return value


def deep_merge(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> dict:
    """``a.b.c=value`` (value parsed as YAML) -> nested dict."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. engine.batch_size=8")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    node: dict = {}
    cur = node
    parts = key.strip().split(".")
    for part in parts[:-1]:
        cur[part] = {}
        cur = cur[part]
    cur[parts[-1]] = value
    return node


# ---------------------------------------------------------------- curricula


def curriculum_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    builtin = PACKAGE_DIR / "curricula" / f"{name_or_path}.yaml"
    if not builtin.exists():
        known = sorted(p.stem for p in (PACKAGE_DIR / "curricula").glob("*.yaml"))
        raise ConfigError(f"unknown curriculum {name_or_path!r}; built-in: {', '.join(known)}, or pass a .yaml path")
    return builtin


def load_curriculum(
    name_or_path: str, preset: str, stage_overrides: dict[str, dict] | None = None
) -> Curriculum:
    """Load, resolve per-preset values, apply per-stage overrides, validate."""
    path = curriculum_path(name_or_path)
    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with 'name' and 'stages'")
    # Presets are resolved before the stage defaults are merged, so that a stage's own
    # {tiny, quick, full} mapping wins over a default's `standard` value (which the
    # stage's quick value then stands in for) rather than mixing with it.
    defaults = select_preset(raw.pop("stage_defaults", {}) or {}, preset)
    raw = select_preset(raw, preset)
    stage_overrides = select_preset(stage_overrides or {}, preset)
    stages = raw.get("stages")
    if not isinstance(stages, list):
        raise ConfigError(f"{path}: field 'stages': expected a list of stage mappings")
    names = [stage.get("name") for stage in stages if isinstance(stage, dict)]
    unknown = sorted(set(stage_overrides or {}) - set(names) - {"*"})
    if unknown:
        raise ConfigError(f"stage_overrides for {unknown}: {path} has no such stage (its stages: {names}; "
                          "'*' means every stage)")
    merged = []
    for i, stage in enumerate(stages):
        if not isinstance(stage, dict):
            raise ConfigError(f"{path}: field 'stages.{i}': expected a mapping")
        spec = deep_merge(defaults, stage)
        for key, override in (stage_overrides or {}).items():
            if key in ("*", spec.get("name")):
                spec = deep_merge(spec, override)
        merged.append(spec)
    raw["stages"] = merged
    try:
        return Curriculum.model_validate(raw)
    except ValidationError as exc:
        # Field paths like stages.2.threshold; name the stage too.
        msg = format_validation_error(str(path), exc)
        for i, stage in enumerate(merged):
            msg = msg.replace(f"'stages.{i}.", f"'stages.{i}({stage.get('name', '?')}).")
        raise ConfigError(msg) from None


def load_run_settings(config_file: str | None, overrides: list[str], base: dict | None = None) -> RunSettings:
    """defaults < config file < ``--set`` overrides < explicit flags (passed in ``base``)."""
    data: dict = {}
    source = "command line"
    if config_file:
        loaded = load_yaml(config_file)
        if not isinstance(loaded, dict):
            raise ConfigError(f"{config_file}: expected a mapping of settings")
        data = loaded
        source = str(config_file)
    for item in overrides:
        data = deep_merge(data, parse_override(item))
    data = deep_merge(data, {k: v for k, v in (base or {}).items() if v is not None})
    try:
        return RunSettings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from None
