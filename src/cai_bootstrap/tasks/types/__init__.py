"""The ten task types of the `tasks` curriculum (see `tasks.types.listing`)."""

from cai_bootstrap.tasks.types.listing import FAMILIES, STAGE0_TASKS, TASK_TYPES, task_family

__all__ = ["FAMILIES", "STAGE0_TASKS", "TASK_TYPES", "task_family"]
