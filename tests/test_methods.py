import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import pruning_jax as pj
from pruning_jax import training


def _params(key=0):
  k = jax.random.split(jax.random.key(key), 2)
  return {
    "a": {"kernel": jax.random.normal(k[0], (20, 10)), "bias": jnp.zeros(10)},
    "b": {"kernel": jax.random.normal(k[1], (10, 5)), "bias": jnp.zeros(5)},
  }


def test_dense_pruner_is_identity_with_zero_sparsity():
  p = _params()
  pruner = pj.methods.dense()
  st = pruner.init(jax.random.key(0), p)
  assert pruner.apply(p, st, key=None, train=True) is p
  assert float(pj.sparsity(pruner.masks(p, st))) == 0.0


def test_magnitude_recomputes_only_when_schedule_changes_and_never_revives():
  p = _params()
  sched = pj.schedules.polynomial(0.8, 0, 100, frequency=10)
  pruner = pj.methods.magnitude_pruning(sched, final_sparsity=0.8)
  st = pruner.init(jax.random.key(0), p)
  update = jax.jit(pruner.update)
  n = 250
  prev = None
  assert n - int(pj.count_kept(pruner.masks(p, st))[0]) == round(float(sched(0)) * n)
  for t in range(0, 101):
    st = update(p, st, pj.StepInfo(jnp.int32(t)))
    m = pruner.masks(p, st)
    removed = n - int(pj.count_kept(m)[0])
    assert removed == round(float(sched(t + 1)) * n)  # the update of step t sets step t + 1's masks
    if prev is not None:  # monotone: a pruned weight stays pruned
      for a, b in zip(jax.tree.leaves(prev), jax.tree.leaves(m), strict=True):
        assert not np.any(np.asarray(b) & ~np.asarray(a))
    prev = m
    # perturb the raw weights: masks computed on masked weights keep removed ones removed
    p = jax.tree.map(lambda x: x * 1.01, p)


@pytest.mark.parametrize("distribution", ["global", "uniform", "erk"])
def test_magnitude_distributions_hit_target(distribution):
  p = _params()
  pruner = pj.methods.magnitude_pruning(0.6, distribution=distribution)
  st = pruner.init(jax.random.key(0), p)
  kept = int(pj.count_kept(pruner.masks(p, st))[0])
  if distribution == "uniform":
    assert kept == (200 - round(0.6 * 200)) + (50 - round(0.6 * 50))
  else:
    assert kept == 250 - round(0.6 * 250)


def test_learned_mask_gradients_reach_variables_only_and_weights_stay_frozen():
  p = _params()
  pruner = pj.methods.learned_mask(pj.aslp_sample)
  tx = training.optimizer(optax.set_to_zero(), optax.sgd(50.0, momentum=0.9), pruner=pruner)

  def apply_fn(params, model_state, x, *, train):
    h = jax.nn.relu(x @ params["a"]["kernel"] + params["a"]["bias"])
    return h @ params["b"]["kernel"] + params["b"]["bias"], model_state

  state = training.init_train_state(jax.random.key(0), {"params": p}, pruner, tx)
  step = jax.jit(training.make_train_step(apply_fn, pruner, tx))
  x = jax.random.normal(jax.random.key(1), (32, 20))
  y = jnp.arange(32) % 5
  m0 = state.pruner_state.learned["scores"]["a"]["kernel"]
  for _ in range(5):
    state, _ = step(state, {"image": x, "label": y})
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(p), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # frozen, bit-identical
  assert not np.allclose(np.asarray(state.pruner_state.learned["scores"]["a"]["kernel"]), np.asarray(m0))
  params, masks = pruner.finalize(state.params, state.pruner_state)
  m = np.asarray(state.pruner_state.learned["scores"]["a"]["kernel"])
  np.testing.assert_array_equal(np.asarray(masks["a"]["kernel"]), m >= 0)
  np.testing.assert_array_equal(
    np.asarray(params["a"]["kernel"]), np.where(m >= 0, np.asarray(p["a"]["kernel"]), 0)
  )


def test_straight_through_forward_and_eval():
  p = _params()
  pruner = pj.methods.straight_through_mask(init=lambda k, w: jnp.abs(w) - 0.5)
  st = pruner.init(jax.random.key(0), p)
  seen = pruner.apply(p, st, key=jax.random.key(1), train=True)
  w = np.asarray(p["a"]["kernel"])
  np.testing.assert_array_equal(np.asarray(seen["a"]["kernel"]), np.where(np.abs(w) - 0.5 > 0, w, 0))
  ev = pruner.apply(p, st, key=None, train=False)
  np.testing.assert_array_equal(np.asarray(ev["a"]["kernel"]), np.asarray(seen["a"]["kernel"]))
