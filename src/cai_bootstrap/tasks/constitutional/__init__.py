"""The constitutional stage's task material: seed topics and its held-out families."""

from cai_bootstrap.tasks.constitutional.families import CONSTITUTIONAL_FAMILIES, OrdinaryHeldout, RedteamHeldout
from cai_bootstrap.tasks.constitutional.seeds import SEED_FILES, SeedTopic, load_seed_topics

__all__ = ["CONSTITUTIONAL_FAMILIES", "OrdinaryHeldout", "RedteamHeldout", "SEED_FILES", "SeedTopic", "load_seed_topics"]
