"""Pruning methods, one module per family; each factory returns a :class:`pruning_jax.Pruner`."""

from pruning_jax.methods.dense import dense
from pruning_jax.methods.magnitude import MagnitudeBuffers, magnitude, score_pruning
from pruning_jax.methods.mask_learning import learned_mask, straight_through

__all__ = ["MagnitudeBuffers", "dense", "learned_mask", "magnitude", "score_pruning", "straight_through"]
