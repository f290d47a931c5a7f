"""What a run evaluates: the deterministic extracted subnetwork (``Pruner.finalize``) and the
method's own forward pass before extraction (``Pruner.apply(train=False)``: freshly sampled
masks for supermask and ASLP, the soft reparametrized network for reparam), over a split in
fixed-size padded batches.

The reported ``test_accuracy`` is always the extracted subnetwork's. A config adds test
evaluations by listing them, ``test_evaluators = [{"name": "forward", "passes": 10}]``: each
entry names a factory in ``__all__`` below with its arguments (bound by its signature, as
pruners are), and the factory returns an :data:`Evaluator`, whose fields go into the summary.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from experiments import data as data_lib
from pruning_jax import training

_GET: dict = {}


def _batch_fn(ds: data_lib.Dataset):
  # keyed by the normalization too: two runs in one process may normalize one dataset differently
  key = (ds.name, tuple(map(float, ds.mean)), tuple(map(float, ds.std)))
  if key not in _GET:
    mean, std = ds.mean, ds.std
    _GET[key] = jax.jit(
      lambda images, labels, idx: {"image": data_lib.normalize(images[idx], mean, std), "label": labels[idx]}
    )
  return _GET[key]


def evaluate(
  eval_step, state, images, labels, ds: data_lib.Dataset, batch_size: int, key
) -> dict[str, float]:
  """Mean loss and accuracy of ``eval_step`` over ``images``/``labels``.

  Args:
    eval_step: a jitted :func:`pruning_jax.training.make_eval_step`.
    state: the train state.
    images: uint8 images of the split.
    labels: their labels.
    ds: the dataset (normalization).
    batch_size: evaluation batch size (the last batch is padded and masked).
    key: PRNG key; batch i uses ``fold_in(key, i)`` (stochastic forward passes).

  Returns:
    ``{"loss": ..., "accuracy": ...}``.
  """
  totals = {"loss": 0.0, "accuracy": 0.0, "count": 0}
  get = _batch_fn(ds)
  for i, (idx, valid) in enumerate(data_lib.eval_batches(len(labels), batch_size)):
    batch = get(images, labels, jnp.asarray(idx))
    batch["valid"] = jnp.asarray(valid)
    out = eval_step(state, batch, jax.random.fold_in(key, i))
    for k in totals:
      totals[k] += float(out[k])
  return {"loss": totals["loss"] / totals["count"], "accuracy": totals["accuracy"] / totals["count"]}


def extracted_step(apply_fn, pruner):
  """The jitted eval step of the deterministic extracted subnetwork."""
  return jax.jit(training.make_eval_step(apply_fn, pruner, finalized=True))


def forward_step(apply_fn, pruner):
  """The jitted eval step of the method's forward pass before extraction (``train=False``)."""
  return jax.jit(training.make_eval_step(apply_fn, pruner, finalized=False))


# What a validation pass may evaluate (config key ``select_on``), each a jitted eval step builder.
VIEWS = {"extracted": extracted_step, "forward": forward_step}


class Split(NamedTuple):
  """What an evaluator evaluates: the run's final network on one split."""

  apply_fn: Callable[..., Any]
  pruner: Any
  state: Any
  images: Any
  labels: Any
  ds: data_lib.Dataset
  batch_size: int
  key: jax.Array


Evaluator = Callable[[Split], dict[str, Any]]  # a split -> summary fields


def forward(passes: int = 1) -> Evaluator:
  """The method's forward pass before extraction, ``passes`` times with fresh mask samples.

  For supermask and ASLP that is the sampled accuracy; for reparam, the soft network just
  before the hard prune (deterministic, so one pass). Fields (names kept from the first
  summaries): ``test_accuracy_sampled`` (every pass), ``..._mean`` and ``..._std``.

  Args:
    passes: independent passes, >= 1.

  Returns:
    The evaluator.
  """
  if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
    raise ValueError(f"forward: passes must be an integer >= 1, got {passes!r}.")

  def run(split: Split) -> dict[str, Any]:
    step = forward_step(split.apply_fn, split.pruner)
    accs = [
      evaluate(
        step,
        split.state,
        split.images,
        split.labels,
        split.ds,
        split.batch_size,
        jax.random.fold_in(split.key, 100 + i),
      )["accuracy"]
      for i in range(passes)
    ]
    return {
      "test_accuracy_sampled_mean": float(np.mean(accs)),
      "test_accuracy_sampled_std": float(np.std(accs)),
      "test_accuracy_sampled": accs,
    }

  return run


__all__ = ["forward"]
