"""Running a curriculum: set up a run directory, then each stage's phases (see `pipeline.runner`)."""
