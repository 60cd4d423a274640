"""cai-bootstrap: progressive self-bootstrapping of a base LM into a constitutional assistant."""

__version__ = "0.1.0"
