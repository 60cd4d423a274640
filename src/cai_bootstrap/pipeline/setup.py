"""A run directory's manifest: create a run, extend it with later stages, load it back."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pydantic import ValidationError

from cai_bootstrap.config import Curriculum, RunSettings, StageSpec, curriculum_path, format_validation_error
from cai_bootstrap.jsonl import atomic_write_json, read_json
from cai_bootstrap.runs.layout import now_iso
from cai_bootstrap.runs.manifest import git_commit, input_hashes, package_versions
from cai_bootstrap.constitution import load_constitution
from cai_bootstrap.models.loading import resolve_model_ref
from cai_bootstrap.stages.registry import get_kind, load_curriculum
from cai_bootstrap.tasks.catalog import FAMILIES


class RunError(RuntimeError):
    """A run cannot continue; the message says why and where to look."""


def default_run_dir(settings: RunSettings) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{Path(settings.curriculum).stem}-{settings.preset}-{stamp}"


def create_run(settings: RunSettings, out: Path | None = None) -> Path:
    """Write the manifest of a new run (refuses to overwrite an existing one).

    The curriculum is checked whole first (kinds and every stage's options), so a typo in
    a late stage fails before the first stage starts.
    """
    run_dir = Path(out) if out else default_run_dir(settings)
    if (run_dir / "manifest.json").exists():
        raise RunError(f"{run_dir} already holds a run; use `cai-bootstrap resume {run_dir}` or another --out")
    curriculum, stages = check_run(settings)
    run_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "run_id": run_dir.name,
        "created": now_iso(),
        "settings": recorded_settings(settings),
        "curriculum": curriculum.model_dump(),
        "curriculum_file": str(curriculum_path(settings.curriculum)),
        "stages": [s.name for s in stages],
        "versions": package_versions(),
        "git_commit": git_commit(),
        "seeds": {"run": settings.seed, "stages": "derived: sha256(run_seed, stage, attempt)"},
        "input_hashes": input_hashes(curriculum_path(settings.curriculum)),
        "hardware": _hardware(),
        "warnings": [],
    }
    atomic_write_json(run_dir / "manifest.json", manifest)
    return run_dir


def check_run(settings: RunSettings) -> tuple[Curriculum, list[StageSpec]]:
    """Everything a new run will need, checked without writing anything: the curriculum whole
    (kinds, families, roles, options, overrides of every stage), ``--stages`` a prefix of it,
    the model references and the constitution. Returns the curriculum and the selected stages."""
    curriculum = load_curriculum(settings.curriculum, settings.preset, settings.stage_overrides)
    stages = _selected_stages(curriculum, settings)
    check_references(settings, stages)
    return curriculum, stages


def extend_run(run_dir: Path, wanted: list[str], stage_overrides: dict | None = None) -> list[str]:
    """Add the stages of ``wanted`` that an existing run lacks (e.g. stage 6 after a
    run of stages 1-5), from the curriculum file as it is now. Returns the added names.

    ``stage_overrides`` (``--set stage_overrides=...`` on the resumed command) may set up
    the stages being added; for a stage the run already has they must equal the run's own,
    since its data and model would no longer match the manifest. Refuses, for the same
    reason, when such a stage is specified differently in the curriculum file now.
    """
    manifest, settings, old = load_run(run_dir)
    new = [name for name in wanted if name not in manifest["stages"]]
    overrides = dict(settings.stage_overrides)
    for name, value in (stage_overrides or {}).items():
        if overrides.get(name) == value:
            continue
        if name not in new:
            where = "is already part of the run" if name in manifest["stages"] else "is not a stage being added"
            raise RunError(
                f"stage_overrides for {name!r}: {name} {where} ({run_dir} has {manifest['stages']}, adding "
                f"{new or 'none'}); its settings are the run's ({overrides.get(name, {})}). Start a new run to change them"
            )
        overrides[name] = value
    if not new:
        return []
    curriculum = load_curriculum(settings.curriculum, settings.preset, overrides)
    names = [s.name for s in curriculum.stages]
    unknown = [n for n in new if n not in names]
    if unknown:
        raise RunError(f"unknown stages {unknown}; curriculum has {names}")
    before = {s.name: s for s in old.stages}
    now = {s.name: s for s in curriculum.stages}
    changed = [n for n in manifest["stages"] if before[n] != now[n]]
    if changed:
        raise RunError(
            f"cannot add {new} to {run_dir}: stages {changed} are specified differently in "
            f"{curriculum_path(settings.curriculum)} now than when the run began; start a new run"
        )
    stages = [n for n in names if n in manifest["stages"] or n in new]
    if stages[: len(manifest["stages"])] != manifest["stages"]:
        raise RunError(f"stages {new} would not follow the run's stages {manifest['stages']} in order")
    if stages != names[: len(stages)]:
        raise RunError(f"stages {stages} are not a prefix of the curriculum's stages {names}")
    check_references(settings, [now[n] for n in new])
    manifest["curriculum"] = curriculum.model_dump()
    manifest["stages"] = stages
    manifest["settings"]["stages"] = stages
    manifest["settings"]["stage_overrides"] = overrides
    manifest.setdefault("extended", []).append(
        {"at": now_iso(), "added": new, "git_commit": git_commit(),
         "input_hashes": input_hashes(curriculum_path(settings.curriculum))}
    )
    atomic_write_json(run_dir / "manifest.json", manifest)
    return new


#: settings a later ``run --out <existing run>`` may give differently: ``stages`` and
#: ``stage_overrides`` add stages (`extend_run` checks them), the API key is never recorded
_EXTENDABLE = ("stages", "stage_overrides", "engine.api_key")


def settings_differences(run_dir: Path, settings: RunSettings) -> list[str]:
    """What ``settings`` (a ``run`` command's) set differently from the run in ``run_dir``, one
    ``key: run's value -> this command's`` line per setting (empty: the same run)."""
    _, recorded, _ = load_run(run_dir)
    before, now = _flat(recorded.model_dump()), _flat(settings.model_dump())
    return [f"{key}: {before.get(key)!r} (the run) vs {now.get(key)!r} (this command)"
            for key in sorted(set(before) | set(now))
            if before.get(key) != now.get(key) and not key.startswith(_EXTENDABLE)]


def check_same_settings(run_dir: Path, settings: RunSettings) -> None:
    """Refuse a ``run`` into an existing run directory with different settings (naming them):
    resuming would silently keep the run's own, and changing them would mix two runs' data."""
    differences = settings_differences(run_dir, settings)
    if differences:
        raise RunError(
            f"{run_dir} already holds a run with different settings: {'; '.join(differences)}. "
            f"Continue it with its own settings: `cai-bootstrap resume {run_dir}`; or start a new run with another --out"
        )


def _flat(data: dict, prefix: str = "") -> dict:
    out: dict = {}
    for key, value in data.items():
        if isinstance(value, dict) and value and key != "stage_overrides":
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _hardware() -> dict:
    import torch

    from cai_bootstrap.models.loading import cpu_supports_bf16

    cuda = torch.cuda.is_available()
    return {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "cpu_count": os.cpu_count(),
        "bf16": cpu_supports_bf16() if not cuda else True,
        "quantization": "bitsandbytes QLoRA on GPU" if cuda else "none on CPU: bf16 LoRA fallback",
    }


def _selected_stages(curriculum: Curriculum, settings: RunSettings) -> list[StageSpec]:
    if not settings.stages:
        return curriculum.stages
    names = [s.name for s in curriculum.stages]
    unknown = [s for s in settings.stages if s not in names]
    if unknown:
        raise RunError(f"unknown stages {unknown}; curriculum has {names}")
    if sorted(settings.stages, key=names.index) != names[: len(settings.stages)]:
        raise RunError(f"--stages {','.join(settings.stages)}: must be a prefix of the curriculum's stages {names} "
                       f"(a stage trains on the one before it), e.g. {','.join(names[: len(settings.stages)])}")
    return [s for s in curriculum.stages if s.name in settings.stages]


def check_references(settings: RunSettings, stages: list[StageSpec]) -> None:
    """What the stages will load, checked before ``manifest.json`` is written: every stage's task
    families, the base and judge model references (local backends) and, for a constitutional
    stage, the constitution."""
    for spec in stages:  # (the planner takes any family name; a run needs them registered)
        unknown = [f for f in spec.families if f not in FAMILIES]
        if unknown:
            raise RunError(f"stage {spec.name!r}: unknown task families {unknown}; known: {', '.join(sorted(FAMILIES))}")
    if settings.engine.backend != "openai":  # a server's model ids are the server's business
        source, _ = resolve_model_ref(settings.model)
        if source == "stage":
            raise RunError(f"--model {settings.model}: a stage model cannot be the base of a new run; "
                           "name its base model, or add stages to that run with `run --out <it> --stages ...`")
        if settings.judge_model:
            resolve_model_ref(settings.judge_model)
    if any(get_kind(s.kind).uses_constitution for s in stages):
        load_constitution(settings.constitution)


def recorded_settings(settings: RunSettings) -> dict:
    """The settings as the manifest keeps them: without ``engine.api_key`` (a secret; a resumed
    run reads the key from ``OPENAI_API_KEY`` again)."""
    data = settings.model_dump()
    data["engine"]["api_key"] = None
    return data


def load_run(run_dir: Path) -> tuple[dict, RunSettings, Curriculum]:
    path = Path(run_dir) / "manifest.json"
    if not path.exists():
        raise RunError(f"{run_dir}: no manifest.json (not a run directory)")
    manifest = read_json(path)
    missing = [k for k in ("run_id", "settings", "curriculum", "stages") if not isinstance(manifest, dict) or k not in manifest]
    if missing:
        raise RunError(f"{path}: not a manifest this tool wrote (missing {', '.join(missing)}); "
                       "restore it or start a new run")
    try:
        settings = RunSettings.model_validate(manifest["settings"])
        curriculum = Curriculum.model_validate(manifest["curriculum"])
    except ValidationError as exc:
        raise RunError(format_validation_error(str(path), exc)) from None
    return manifest, settings, curriculum


def add_manifest_warning(run_dir: Path, text: str) -> None:
    manifest = read_json(run_dir / "manifest.json")
    if text not in manifest["warnings"]:
        manifest["warnings"].append(text)
        atomic_write_json(run_dir / "manifest.json", manifest)
