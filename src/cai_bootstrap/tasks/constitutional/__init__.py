"""The constitutional stage's task material: seed topics and its held-out families."""

from cai_bootstrap.tasks.constitutional.families import CONSTITUTIONAL_FAMILIES, OrdinaryHeldout, RedteamHeldout, dev_instances
from cai_bootstrap.tasks.constitutional.seeds import SEED_FILES, SeedTopic, load_seed_topics, lookalike_topics, record_side

__all__ = [
    "CONSTITUTIONAL_FAMILIES", "OrdinaryHeldout", "RedteamHeldout", "SEED_FILES", "SeedTopic", "dev_instances",
    "load_seed_topics", "lookalike_topics", "record_side",
]
