"""Converters from other formats to adain-jax weights directories (run from the repository root)."""
