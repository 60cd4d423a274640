"""Model registry and loading: the embedded GGUF base, HF ids/paths, tiny test models, stage models."""

from cai_bootstrap.models.loading import LoadedModel, load_model, resolve_model_ref

__all__ = ["LoadedModel", "load_model", "resolve_model_ref"]
