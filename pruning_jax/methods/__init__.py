"""Pruning methods, one module per family; each factory returns a :class:`pruning_jax.Pruner`.

Families: ``dense`` (the baseline); ``score`` (score pruning with any schedule, structure and
scope: magnitude, gradual, iterative); ``mask_learning`` (straight-through, edge-popup,
supermask, ASLP); ``reparam`` (budget-aware weight reparametrization); ``channel`` (structured:
one-shot filter pruning, soft filter pruning); ``scratch`` (Pruning from Scratch's channel gates
on random weights); ``at_init`` (pruning at initialization: SNIP, GraSP, SynFlow, random);
``lottery`` (iterative magnitude pruning rounds for lottery tickets and rewinding);
``sparse_training`` (dynamic sparse training: SET, RigL); ``l0`` (hard-concrete L0 gates, per
weight or per channel).
"""

from pruning_jax.methods.at_init import at_init, grasp, random_pruning, snip, synflow
from pruning_jax.methods.channel import channel_pruning, soft_filter_pruning
from pruning_jax.methods.dense import dense, penalized
from pruning_jax.methods.l0 import l0_gates
from pruning_jax.methods.lottery import imp_round
from pruning_jax.methods.mask_learning import (
  aslp,
  edge_popup,
  learned_mask,
  straight_through_mask,
  supermask,
)
from pruning_jax.methods.reparam import reparam
from pruning_jax.methods.score import magnitude_pruning, score_pruning
from pruning_jax.methods.scratch import pruning_from_scratch
from pruning_jax.methods.sparse_training import dynamic_sparse, rigl, set_training

__all__ = [
  "aslp",
  "at_init",
  "channel_pruning",
  "dense",
  "dynamic_sparse",
  "edge_popup",
  "grasp",
  "imp_round",
  "l0_gates",
  "learned_mask",
  "magnitude_pruning",
  "penalized",
  "pruning_from_scratch",
  "random_pruning",
  "reparam",
  "rigl",
  "score_pruning",
  "set_training",
  "snip",
  "soft_filter_pruning",
  "straight_through_mask",
  "supermask",
  "synflow",
]
