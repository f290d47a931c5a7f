"""Dynamic sparse training: RigL's drop and grow against a NumPy reference, SET's growth a
function of the key alone, grown weights and moments at zero, the sparsity constant."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import pruning_jax as pj
from pruning_jax import training


def _params():
  k1, k2 = jax.random.split(jax.random.key(0))
  return {"a": {"kernel": jax.random.normal(k1, (30, 40))}, "b": {"kernel": jax.random.normal(k2, (40, 20))}}


def test_rigl_drops_the_smallest_active_and_grows_the_largest_gradients_among_the_inactive():
  params = _params()
  pruner = pj.methods.rigl(0.8, end_step=1000, every_steps=10, drop_fraction=0.3, distribution="uniform")
  state = pruner.init(jax.random.key(1), params)
  grads = jax.tree.map(lambda w: jax.random.normal(jax.random.key(7), w.shape), params)
  t = 9  # due: (t + 1) % 10 == 0
  new = jax.jit(pruner.update)(params, state, pj.StepInfo(jnp.int32(t), jax.random.key(3), grads))
  f = 0.5 * 0.3 * (1 + np.cos(np.pi * t / 1000))  # the cosine-decayed drop fraction
  for k in params:
    w, g = np.asarray(params[k]["kernel"]), np.asarray(grads[k]["kernel"])
    before = np.asarray(state.buffers.masks[k]["kernel"])
    after = np.asarray(new.buffers.masks[k]["kernel"])
    n = int(before.sum())
    n_drop = int(np.round(f * n))
    order = np.argsort(np.where(before, np.abs(w), np.inf), axis=None)
    kept = before.copy().ravel()
    kept[order[:n_drop]] = False  # the n_drop smallest active magnitudes
    grow_order = np.argsort(np.where(kept, -np.inf, np.abs(g.ravel())))[::-1]
    want = kept.copy()
    want[grow_order[:n_drop]] = True  # the n_drop largest dense gradients among the inactive
    np.testing.assert_array_equal(after.ravel(), want)
    assert int(after.sum()) == n and n_drop > 0


def test_set_growth_depends_on_the_key_and_nothing_else():
  params = _params()
  pruner = pj.methods.set_training(0.8, end_step=1000, every_steps=1, distribution="erk")
  state = pruner.init(jax.random.key(1), params)
  up = jax.jit(pruner.update)
  g1 = jax.tree.map(jnp.ones_like, params)
  g2 = jax.tree.map(lambda w: -3.0 * jnp.ones_like(w), params)
  a = up(params, state, pj.StepInfo(jnp.int32(0), jax.random.key(5), g1)).buffers.masks
  b = up(params, state, pj.StepInfo(jnp.int32(0), jax.random.key(5), g2)).buffers.masks
  c = up(params, state, pj.StepInfo(jnp.int32(0), jax.random.key(6), g1)).buffers.masks
  assert pj.masks_equal(a, b) and not pj.masks_equal(a, c)


def test_grown_weights_start_at_zero_dropped_ones_end_there_and_the_sparsity_never_moves():
  # (a regrown weight's optimizer moments restart: reset_regrown, tested in test_transforms)
  params = _params()

  def apply_fn(p, s, x, *, train):
    return jax.nn.relu(x @ p["a"]["kernel"]) @ p["b"]["kernel"], s

  pruner = pj.methods.rigl(0.9, end_step=10_000, every_steps=3, distribution="uniform")
  tx = training.optimizer(optax.sgd(0.1, momentum=0.9), pruner=pruner)
  state = training.init_train_state(jax.random.key(1), {"params": params}, pruner, tx)
  step = jax.jit(training.make_train_step(apply_fn, pruner, tx))
  n_kept = [int(pj.count_kept(pruner.masks(state.params, state.pruner_state))[0])]
  grew = False
  for i in range(9):
    x = jax.random.normal(jax.random.key(100 + i), (16, 30))
    batch = {"image": x, "label": jnp.arange(16) % 20}
    before = state
    state, _ = step(state, batch)
    m0 = before.pruner_state.buffers.masks
    m1 = state.pruner_state.buffers.masks
    n_kept.append(int(pj.count_kept(m1)[0]))
    for k in params:
      grown = np.asarray(m1[k]["kernel"]) & ~np.asarray(m0[k]["kernel"])
      gone = np.asarray(m0[k]["kernel"]) & ~np.asarray(m1[k]["kernel"])
      if grown.any():
        grew = True
        # from exactly 0 (removed weights were zeroed by the step that removed them); the growing
        # step's gradient reaches them through the old mask as 0, so they are still 0 after it
        assert np.all(np.asarray(before.params[k]["kernel"])[grown] == 0.0)
        assert np.all(np.asarray(state.params[k]["kernel"])[grown] == 0.0)
      assert np.all(np.asarray(state.params[k]["kernel"])[gone] == 0.0)  # dropped: exactly 0
  assert grew and len(set(n_kept)) == 1


def test_set_with_a_constant_rate_drops_zeta_of_each_layer_at_every_update_and_counts_them():
  params = _params()
  pruner = pj.methods.set_training(
    0.8, end_step=100, every_steps=10, decay="constant", distribution="uniform"
  )
  state = pruner.init(jax.random.key(1), params)
  up = jax.jit(pruner.update)
  for t in range(100):
    new = up(params, state, pj.StepInfo(jnp.int32(t), jax.random.key(t)))
    for k in params:
      before = np.asarray(state.buffers.masks[k]["kernel"])
      after = np.asarray(new.buffers.masks[k]["kernel"])
      n, moved = int(before.sum()), int((before & ~after).sum())
      # due at t = 9, 19, ...: exactly round(0.3 n) dropped (and as many grown: the count holds),
      # the rate undecayed even at the last update; a regrown just-dropped weight counts as kept
      if (t + 1) % 10 == 0:
        assert 0.8 * round(0.3 * n) <= moved <= round(0.3 * n) and int(after.sum()) == n
      else:
        assert moved == 0
    state = new
  assert float(pruner.metrics(params, state)["updates"]) == 10.0
  with pytest.raises(ValueError, match="decay='linear' is unknown"):
    pj.methods.set_training(0.8, end_step=10, decay="linear")


def test_bad_arguments_are_named():
  with pytest.raises(ValueError, match="dynamic_sparse: grow='hebbian' is unknown"):
    pj.methods.dynamic_sparse(0.9, grow="hebbian", end_step=10)
  with pytest.raises(ValueError, match=r"every_steps must be an int >= 1, got 0"):
    pj.methods.rigl(0.9, end_step=10, every_steps=0)
  with pytest.raises(ValueError, match="end_step must be an int >= 1"):
    pj.methods.set_training(0.9, end_step=0)
  with pytest.raises(ValueError, match="initial_fraction must be in"):
    pj.methods.rigl(0.9, end_step=10, drop_fraction=1.5)
  pruner = pj.methods.rigl(0.9, end_step=10, every_steps=1)
  state = pruner.init(jax.random.key(0), _params())
  with pytest.raises(ValueError, match="RigL grows by the dense gradient; StepInfo.grads is None"):
    pruner.update(_params(), state, pj.StepInfo(jnp.int32(0)))


def test_the_loop_that_skips_the_update_where_it_is_not_due_gives_the_same_training():
  params = _params()

  def apply_fn(p, s, x, *, train):
    return jax.nn.relu(x @ p["a"]["kernel"]) @ p["b"]["kernel"], s

  set_ = pj.methods.set_training(0.8, end_step=9, every_steps=2, decay="constant")
  assert [t for t in range(12) if set_.update_due(t)] == [1, 3, 5, 7]
  for pruner, want in ((pj.methods.rigl(0.9, end_step=9, every_steps=3, distribution="uniform"), [2, 5, 8]),):
    due = [t for t in range(12) if pruner.update_due(t)]
    assert due == want
    tx = training.optimizer(optax.sgd(0.1, momentum=0.9), pruner=pruner)
    state = training.init_train_state(jax.random.key(1), {"params": params}, pruner, tx)
    full = jax.jit(training.make_train_step(apply_fn, pruner, tx))
    picked = training.train_step_for(apply_fn, pruner, tx)
    a = b = state
    for t in range(12):
      x = jax.random.normal(jax.random.key(100 + t), (16, 30))
      batch = {"image": x, "label": jnp.arange(16) % 20}
      if not pruner.update_due(t):  # where not due, the update is the identity
        info = pj.StepInfo(jnp.int32(t), jax.random.key(t), jax.tree.map(jnp.ones_like, params))
        chex.assert_trees_all_equal(pruner.update(a.params, a.pruner_state, info), a.pruner_state)
      a, ma = full(a, batch)
      b, mb = picked(b, batch, t)
    chex.assert_trees_all_equal(a, b)
    assert float(mb["updates"]) == len(due) > 0
