"""Persistence: key and value formats defined once, the model registry, Redis publication and reads."""
