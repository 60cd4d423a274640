"""The constitutional stage's held-out families (``redteam``, ``ordinary``), registered on import."""

from cai_bootstrap.evaluation.safety_gate import register_families

register_families()
