"""Stage kinds: the contract (`stages.kind`), one module or folder per kind, and the registry (`stages.registry`)."""
