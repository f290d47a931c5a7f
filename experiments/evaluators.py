"""What a run evaluates: the deterministic extracted subnetwork (``Pruner.finalize``) and the
method's own forward pass before extraction (``Pruner.apply(train=False)``: freshly sampled
masks for supermask and ASLP, the soft reparametrized network for reparam), over a split in
fixed-size padded batches."""

from __future__ import annotations

import jax
import jax.numpy as jnp

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


def extracted(apply_fn, pruner):
  """The jitted eval step of the deterministic extracted subnetwork."""
  return jax.jit(training.make_eval_step(apply_fn, pruner, finalized=True))


def forward(apply_fn, pruner):
  """The jitted eval step of the method's forward pass before extraction (``train=False``)."""
  return jax.jit(training.make_eval_step(apply_fn, pruner, finalized=False))


def sampled_accuracies(
  apply_fn, pruner, state, images, labels, ds, batch_size, key, passes: int
) -> list[float]:
  """Accuracy of ``passes`` independent forward passes (fresh mask samples each)."""
  step = forward(apply_fn, pruner)
  return [
    evaluate(step, state, images, labels, ds, batch_size, jax.random.fold_in(key, 100 + i))["accuracy"]
    for i in range(passes)
  ]
