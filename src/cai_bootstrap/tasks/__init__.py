"""Task families by name: the contract (`tasks.base`) and the registry (`tasks.catalog`)."""

from cai_bootstrap.tasks.base import Instance, TaskFamily, Verdict
from cai_bootstrap.tasks.catalog import FAMILIES, get_family, register

__all__ = ["FAMILIES", "Instance", "TaskFamily", "Verdict", "get_family", "register"]
