"""A run directory's state: where files live (`layout`), the manifest's provenance (`manifest`), loaded models (`pool`)."""
