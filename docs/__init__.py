"""The documentation's tooling: `docs.figures` makes the pictures under docs/images/."""
