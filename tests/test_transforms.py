import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import linen_params

import pruning_jax as pj
from pruning_jax import transforms as tfm


def _loss(params, x):
  h = x.reshape(x.shape[0], -1)[:, :32] @ params["params"]["Dense_0"]["kernel"]
  return jnp.mean((h @ params["params"]["Dense_1"]["kernel"]) ** 2) + jnp.sum(
    params["params"]["Conv_0"]["kernel"] ** 2
  )


@pytest.mark.parametrize(
  "opt",
  [
    lambda: optax.sgd(0.05, momentum=0.9),
    lambda: optax.adam(1e-2),
    lambda: optax.chain(optax.add_decayed_weights(1e-2), optax.sgd(0.05, momentum=0.9, nesterov=True)),
    lambda: optax.adamw(1e-2, weight_decay=0.1),
  ],
)
def test_keep_masked_pruned_weights_stay_exactly_zero(opt):
  params = linen_params()
  masks = pj.masks_from_scores(pj.criteria.magnitude(params), 0.8, scope="global")
  params = pj.apply_masks(params, masks)
  tx = optax.chain(opt(), pj.keep_masked())
  state = tx.init(params)

  @jax.jit
  def step(params, state, x):
    grads = jax.grad(_loss)(params, x)
    updates, state = tx.update(grads, state, params, masks=masks)
    return optax.apply_updates(params, updates), state

  start = params
  for i in range(50):
    params, state = step(params, state, jax.random.normal(jax.random.key(i), (8, 32)))
  for p, m in zip(jax.tree.leaves(params), jax.tree.leaves(masks), strict=True):
    removed = ~np.broadcast_to(np.asarray(m), p.shape)
    assert np.all(np.asarray(p)[removed] == 0.0)
  # and the kept weights did train
  k = params["params"]["Dense_0"]["kernel"]
  assert not np.allclose(np.asarray(k), np.asarray(start["params"]["Dense_0"]["kernel"]))


def test_keep_masked_requires_masks():
  tx = pj.keep_masked()
  params = {"w": jnp.ones((2, 2))}
  with pytest.raises(ValueError, match="masks=masks"):
    tx.update(params, tx.init(params), params)
  with pytest.raises(ValueError, match="same pytree structure"):
    tx.update(params, tx.init(params), params, masks={"v": jnp.ones((2, 2), bool)})


def _gate_cost(params):
  return sum(jnp.sum(pj.reparam_gate(w, 100.0)) for w in jax.tree.leaves(params))


def test_budget_penalty_gradient_equals_jax_grad_of_formula():
  params = {
    "a": 0.02 * jax.random.normal(jax.random.key(0), (20, 10)),
    "b": 0.02 * jax.random.normal(jax.random.key(1), (30,)),
  }
  target, lam = 50.0, 3.0
  tx = pj.budget_penalty(lam, _gate_cost, target=target)
  state = tx.init(params)
  c0 = float(_gate_cost(params))
  np.testing.assert_allclose(float(state.initial_cost), c0, rtol=1e-6)
  moved = jax.tree.map(lambda p: p * 1.3, params)  # C differs from C_initial now
  zeros = jax.tree.map(jnp.zeros_like, moved)
  updates, state2 = jax.jit(tx.update)(zeros, state, moved)
  ref = jax.grad(lambda p: lam * ((_gate_cost(p) - target) / c0) ** 2)(moved)
  chex.assert_trees_all_close(updates, ref, rtol=1e-4, atol=1e-6)
  assert int(state2.count) == 1
  # it adds to incoming updates
  ones = jax.tree.map(jnp.ones_like, moved)
  updates1, _ = tx.update(ones, state, moved)
  chex.assert_trees_all_close(updates1, jax.tree.map(lambda r: r + 1.0, ref), rtol=1e-4, atol=1e-6)


def test_budget_penalty_with_schedules_and_sgd_meets_budget():
  """Gradient descent on the budget term alone drives C to C_target."""
  params = {"w": 0.02 * jax.random.normal(jax.random.key(0), (400,))}
  target = 100.0
  tx = optax.chain(pj.budget_penalty(lambda s: 1.0, _gate_cost, target=lambda s: target), optax.adam(1e-3))
  state = tx.init(params)

  @jax.jit
  def step(params, state):
    updates, state = tx.update(jax.tree.map(jnp.zeros_like, params), state, params)
    return optax.apply_updates(params, updates), state

  for _ in range(300):
    params, state = step(params, state)
  assert abs(float(_gate_cost(params)) - target) < 0.02 * target


def test_budget_loss_formula():
  assert float(tfm.budget_loss(jnp.float32(30.0), 10.0, jnp.float32(40.0))) == pytest.approx(0.25)


def test_mean_gate_penalty_gradient():
  params = {"g1": jnp.array([1.0, 0.5, -0.2]), "g2": jnp.array([0.3]), "w": jnp.ones((2, 2))}
  tx = pj.mean_gate_penalty(0.5, 0.2, selection=r"^g")
  updates, _ = jax.jit(tx.update)(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)

  def ref(p):
    g = jnp.concatenate([p["g1"], p["g2"]])
    return 0.5 * (jnp.mean(jnp.abs(g)) - 0.2) ** 2

  r = jax.grad(ref)(params)
  chex.assert_trees_all_close(updates, r, rtol=1e-6)
  assert float(jnp.abs(updates["w"]).sum()) == 0.0


def test_l1_and_group_lasso_gradients():
  w = jnp.array([[1.0, -2.0, 0.0], [3.0, 0.0, 0.0]])
  params = {"k": w, "b": jnp.ones(3)}
  tx = pj.l1_penalty(0.1)
  u, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
  np.testing.assert_allclose(np.asarray(u["k"]), 0.1 * np.sign(np.asarray(w)))
  assert float(u["b"].sum()) == 0.0  # not selected by default
  tx = pj.group_lasso_penalty(0.1, axis=-1)
  u, _ = jax.jit(tx.update)(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
  wn = np.asarray(w)
  norms = np.sqrt((wn**2).sum(0))
  ref = np.where(norms > 0, 0.1 * np.sqrt(2) * wn / np.where(norms > 0, norms, 1), 0.0)
  np.testing.assert_allclose(np.asarray(u["k"]), ref, rtol=1e-6)
  assert np.isfinite(np.asarray(u["k"])).all()  # the all-zero column has a finite (0) gradient


def test_clip_to_range_lands_exactly_inside():
  params = {"gates": jnp.array([0.3, 0.999999, 1e-8, 0.5, 0.7], jnp.float32), "w": jnp.ones((2, 2))}
  updates = {"gates": jnp.array([0.7000001, 0.5, -0.3, 0.1, -0.70000005]), "w": 5 * jnp.ones((2, 2))}
  tx = optax.chain(optax.identity(), pj.clip_to_range(0.0, 1.0, selection="gates"))
  u, _ = jax.jit(tx.update)(updates, tx.init(params), params)
  new = optax.apply_updates(params, u)
  g = np.asarray(new["gates"])
  assert g.min() >= 0.0 and g.max() <= 1.0
  np.testing.assert_allclose(
    g, np.clip(np.asarray(params["gates"]) + np.asarray(updates["gates"]), 0, 1), atol=1e-7
  )
  np.testing.assert_array_equal(np.asarray(new["w"]), 6.0)  # not selected
  with pytest.raises(ValueError, match="lo < hi"):
    pj.clip_to_range(1.0, 0.0)


def test_penalties_need_params():
  tx = pj.l1_penalty(0.1)
  with pytest.raises(ValueError, match="needs the current params"):
    tx.update({"w": jnp.ones((2, 2))}, tx.init(None))


def test_budget_penalty_target_fn_is_evaluated_once_at_init():
  params = {"w": 0.02 * jax.random.normal(jax.random.key(0), (400,))}
  tx = pj.budget_penalty(2.0, _gate_cost, target_fn=lambda p: 0.25 * p["w"].size)
  state = tx.init(params)
  assert float(state.target) == 100.0
  moved = {"w": params["w"] * 1.5}
  updates, _ = tx.update({"w": jnp.zeros(400)}, state, moved)
  ref = jax.grad(lambda p: 2.0 * ((_gate_cost(p) - 100.0) / state.initial_cost) ** 2)(moved)
  chex.assert_trees_all_close(updates, ref, rtol=1e-5)
  with pytest.raises(ValueError, match="exactly one of target"):
    pj.budget_penalty(1.0, _gate_cost, target=1.0, target_fn=lambda p: 1.0)
  with pytest.raises(ValueError, match="exactly one of target"):
    pj.budget_penalty(1.0, _gate_cost)


def test_reset_regrown_restarts_adam_moments_inside_the_training_optimizer_only_where_grown():
  pruner = pj.methods.magnitude_pruning(0.5)
  tx = pj.training.optimizer(optax.adam(0.1), pruner=pruner)
  params = {"w": jnp.arange(1.0, 5.0)}
  tree = {"params": params, "learned": {}}
  keep = {"params": {"w": jnp.ones(4, bool)}, "learned": {}}
  no_growth = {"params": {"w": jnp.zeros(4, bool)}, "learned": {}}
  state = tx.init(tree)
  g = {"params": {"w": jnp.ones(4)}, "learned": {}}
  _, state = tx.update(g, state, tree, masks=keep, grown=no_growth)
  grown = {"params": {"w": jnp.array([False, True, False, False])}, "learned": {}}
  zero = {"params": {"w": jnp.zeros(4)}, "learned": {}}
  before = jax.tree.leaves(state)
  _, after_state = jax.jit(lambda s: tx.update(zero, s, tree, masks=keep, grown=grown))(state)
  # find Adam's moments (params-shaped float leaves) and its count in the new state
  moments = [x for x in jax.tree.leaves(after_state) if getattr(x, "shape", None) == (4,)]
  assert len(moments) == 2  # mu and nu
  for m in moments:
    # decayed from the first step everywhere but the regrown weight, which restarted at 0
    assert float(m[1]) == 0.0 and float(m[0]) > 0.0
  counts = [int(x) for x in jax.tree.leaves(after_state) if getattr(x, "dtype", None) == jnp.int32]
  assert counts and all(c == 2 for c in counts)  # the clock is not reset
  assert len(before) == len(jax.tree.leaves(after_state))


def test_keep_masked_zero_removed_needs_params():
  with pytest.raises(ValueError, match="needs the current params"):
    pj.keep_masked(zero_removed=True).update(jnp.ones(2), optax.EmptyState(), None, masks=jnp.ones(2, bool))
