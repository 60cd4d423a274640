"""Run directories: manifest, per-stage state, resumable execution."""
