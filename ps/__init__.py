"""Parameter-server side of the training service: optimizers, shards, jobs, API, metrics, CLI."""

__version__ = "0.1.0"
