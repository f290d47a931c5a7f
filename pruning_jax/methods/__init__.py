"""Pruning methods, one module per family; each factory returns a :class:`pruning_jax.Pruner`."""

from pruning_jax.methods.dense import dense
from pruning_jax.methods.magnitude import MagnitudeBuffers, magnitude, score_pruning

__all__ = ["MagnitudeBuffers", "dense", "magnitude", "score_pruning"]
