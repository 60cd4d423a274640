import os

import pytest

# Tests never touch a hub, and keep the user's model cache out of tmp runs.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_engine():
    from cai_bootstrap.engines.transformers_engine import TransformersEngine

    return TransformersEngine.from_ref("tiny", batch_size=8)
