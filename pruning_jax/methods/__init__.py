"""Pruning methods, one module per family; each factory returns a :class:`pruning_jax.Pruner`."""

from pruning_jax.methods.dense import dense
from pruning_jax.methods.magnitude import MagnitudeBuffers, magnitude, score_pruning
from pruning_jax.methods.mask_learning import (
  aslp,
  edge_popup,
  empirical_std,
  kaiming_std,
  kaiming_uniform_scores,
  learned_mask,
  straight_through,
  supermask,
)
from pruning_jax.methods.reparam import reparam

__all__ = [
  "MagnitudeBuffers",
  "aslp",
  "dense",
  "edge_popup",
  "empirical_std",
  "kaiming_std",
  "kaiming_uniform_scores",
  "learned_mask",
  "magnitude",
  "reparam",
  "score_pruning",
  "straight_through",
  "supermask",
]
