"""cai-bootstrap: progressive self-bootstrapping of a base LM into a constitutional assistant."""

import os

__version__ = "0.1.0"

# Transparent huge pages for PyTorch's big CPU tensors (the LM head's tokens x 262k-vocab
# chunks): on the 2-core machine a fresh 268 MB tensor cost ~190 ms of page faults without,
# ~90 ms with. PyTorch reads this once, at its first allocation, so it only takes effect when
# cai_bootstrap is imported before torch allocates anything (the CLI and the benchmark do).
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
