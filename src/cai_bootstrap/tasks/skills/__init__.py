"""Task families of the `skills` curriculum, one module per stage (see `tasks.catalog`)."""
