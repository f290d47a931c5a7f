"""pruning_jax: functional neural-network pruning for JAX.

Masks are pytrees that sit next to params, estimators are pure array functions, penalties are
optax transforms. Submodules: ``tree``, ``selection``, ``thresholds``, ``structures``,
``estimators``, ``criteria``, ``schedules``, ``distributions``, ``transforms``, ``accounting``.
"""

from pruning_jax import (
  accounting,
  criteria,
  distributions,
  estimators,
  methods,
  schedules,
  selection,
  structures,
  thresholds,
  training,
  transforms,
  tree,
)
from pruning_jax.accounting import FlopReport, ParamCounts, count_flops, count_params, param_use_order
from pruning_jax.estimators import (
  aslp_sample,
  bernoulli_ste,
  gumbel_sigmoid,
  gumbel_softmax,
  hard_concrete,
  hard_concrete_l0,
  hard_concrete_mean,
  hard_threshold_ste,
  reparam_gate,
  straight_through,
  topk_ste,
)
from pruning_jax.masks import (
  LeafSummary,
  apply_masks,
  check_masks,
  count_kept,
  density,
  init_masks,
  mask_summary,
  masks_equal,
  masks_from_scores,
  sparsity,
)
from pruning_jax.pruner import Pruner, PrunerState
from pruning_jax.selection import exclude_first, exclude_last, select
from pruning_jax.structures import Structure, blocks, channels, nm, unstructured
from pruning_jax.transforms import (
  budget_penalty,
  clip_to_range,
  group_lasso_penalty,
  keep_masked,
  l1_penalty,
  mean_gate_penalty,
)

__version__ = "0.1.0"

__all__ = [
  "FlopReport",
  "LeafSummary",
  "ParamCounts",
  "Pruner",
  "PrunerState",
  "Structure",
  "accounting",
  "apply_masks",
  "aslp_sample",
  "bernoulli_ste",
  "blocks",
  "budget_penalty",
  "channels",
  "check_masks",
  "clip_to_range",
  "count_flops",
  "count_kept",
  "count_params",
  "criteria",
  "density",
  "distributions",
  "estimators",
  "exclude_first",
  "exclude_last",
  "group_lasso_penalty",
  "gumbel_sigmoid",
  "gumbel_softmax",
  "hard_concrete",
  "hard_concrete_l0",
  "hard_concrete_mean",
  "hard_threshold_ste",
  "init_masks",
  "keep_masked",
  "l1_penalty",
  "mask_summary",
  "masks_equal",
  "masks_from_scores",
  "methods",
  "mean_gate_penalty",
  "nm",
  "param_use_order",
  "reparam_gate",
  "schedules",
  "select",
  "selection",
  "sparsity",
  "straight_through",
  "structures",
  "thresholds",
  "topk_ste",
  "transforms",
  "training",
  "tree",
  "unstructured",
]
