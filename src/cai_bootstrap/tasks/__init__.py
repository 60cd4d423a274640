"""Task families by name. Add a family: write its module, add it to `FAMILIES`."""

from __future__ import annotations

from cai_bootstrap.tasks.base import Instance, TaskFamily, Verdict

FAMILIES: dict[str, TaskFamily] = {}


def register(family: TaskFamily) -> TaskFamily:
    FAMILIES[family.name] = family
    return family


def get_family(name: str) -> TaskFamily:
    _load_builtin()
    if name not in FAMILIES:
        raise KeyError(f"unknown task family {name!r}; known: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]


def _load_builtin() -> None:
    """Import the built-in family modules once (each calls `register`)."""
    from cai_bootstrap.tasks import catalog  # noqa: F401


__all__ = ["FAMILIES", "Instance", "TaskFamily", "Verdict", "get_family", "register"]
