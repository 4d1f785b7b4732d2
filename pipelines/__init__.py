"""The Ray wiring per stage (Data pipelines, Train loops, Tune search, precompute); nothing here parses argv."""
