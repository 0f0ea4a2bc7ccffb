"""adain-jax benchmarks against the PyTorch port: ``python -m benchmarks.run`` (see docs/performance.md)."""
