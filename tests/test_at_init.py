"""Pruning at initialization: SNIP against the mask gradient, GraSP's Hessian-vector product
against the explicit Hessian, SynFlow's conservation law and exact sparsity, random ERK."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import pruning_jax as pj
from pruning_jax import training


class MLP(nn.Module):
  widths: tuple = (12, 10)
  use_bias: bool = True
  act: str = "tanh"  # smooth: a non-zero Hessian everywhere

  @nn.compact
  def __call__(self, x):
    for w in self.widths:
      x = getattr(nn, self.act)(nn.Dense(w, use_bias=self.use_bias)(x))
    return nn.Dense(3, use_bias=self.use_bias)(x)


def _setup(model=None, n=16):
  model = model or MLP()
  x = jax.random.normal(jax.random.key(1), (n, 6))
  params = model.init(jax.random.key(0), x)["params"]
  batch = {"image": x, "label": jnp.arange(n) % 3}
  ctx = training.init_context(training.linen_apply(model), {}, batches=[batch])
  return model, params, ctx, batch


def test_snip_is_the_gradient_of_the_loss_with_respect_to_a_mask_at_one():
  model, params, ctx, batch = _setup()
  ones = jax.tree.map(jnp.ones_like, params)
  dmask = jax.grad(lambda c: ctx.loss_fn(jax.tree.map(jnp.multiply, params, c), batch))(ones)
  want = jax.tree.map(jnp.abs, dmask)
  total = sum(float(jnp.sum(v)) for v in jax.tree.leaves(want))
  got = jax.jit(lambda p: pj.criteria.connection_sensitivity(ctx.loss_fn, p, ctx.batches))(params)
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    np.testing.assert_allclose(g, w / total, rtol=1e-5, atol=1e-9)


def test_grasp_is_the_weight_times_the_explicit_hessian_times_the_gradient():
  model, params, ctx, batch = _setup(MLP(widths=(5,)))
  flat, unravel = ravel_pytree(params)

  def loss(theta):
    return ctx.loss_fn(unravel(theta), batch, temperature=200.0)

  g = jax.grad(loss)(flat)
  h = jax.hessian(loss)(flat)  # the explicit Hessian of a 53-parameter MLP
  want = np.asarray(flat) * (np.asarray(h) @ np.asarray(g))
  want = want / abs(want.sum())
  got = pj.criteria.gradient_flow(lambda p, b: ctx.loss_fn(p, b, temperature=200.0), params, ctx.batches)
  np.testing.assert_allclose(ravel_pytree(got)[0], want, rtol=2e-3, atol=1e-7)
  # the Pruner removes the highest -w * Hg: it keeps the top of this score
  pruner = pj.methods.grasp(0.5, temperature=200.0)
  masks = pruner.masks(params, pruner.init(jax.random.key(0), params, ctx))
  kernels = [(m, s) for m, s in zip(jax.tree.leaves(masks), jax.tree.leaves(got), strict=True) if np.ndim(m)]
  kept = np.concatenate([np.asarray(s)[np.asarray(m)] for m, s in kernels])
  gone = np.concatenate([np.asarray(s)[~np.asarray(m)] for m, s in kernels])
  assert kept.min() >= gone.max()


def test_synflow_conserves_the_flow_in_every_layer_of_a_bias_free_network():
  # positively homogeneous (ReLU): on |theta| and a positive input the network is linear
  model, params, ctx, _ = _setup(MLP(widths=(12, 10, 8), use_bias=False, act="relu"))
  scores = pj.criteria.synaptic_flow(lambda p, x: model.apply({"params": p}, x), params, ctx.example_input)
  sums = [float(np.sum(np.asarray(s, np.float64))) for s in jax.tree.leaves(scores)]
  assert len(sums) == 4 and jax.tree.leaves(scores)[0].dtype == jnp.float64
  np.testing.assert_allclose(sums, sums[0], rtol=1e-10)  # Tanaka et al., Theorem 1


def test_float64_keeps_the_flow_of_a_deep_network_that_float32_loses():
  deep = MLP(widths=(4,) * 40, use_bias=False, act="relu")
  x = jnp.ones((1, 6))
  params = jax.tree.map(lambda w: 0.05 * w, deep.init(jax.random.key(0), x)["params"])
  fwd = lambda p, x: deep.apply({"params": p}, x)  # noqa: E731
  lost = pj.criteria.synaptic_flow(fwd, params, x, dtype=jnp.float32)
  kept = pj.criteria.synaptic_flow(fwd, params, x, dtype=jnp.float64)
  assert all(not np.any(np.asarray(s)) for s in jax.tree.leaves(lost))  # underflowed to 0
  assert all(np.all(np.asarray(s) > 0) for s in jax.tree.leaves(kept))


@pytest.mark.parametrize("sparsity", [pytest.param(0.9, marks=pytest.mark.slow), 0.99])
def test_iterative_synflow_reaches_the_exact_sparsity_after_100_rounds(sparsity):
  model, params, ctx, _ = _setup(MLP(widths=(40, 30)))
  pruner = pj.methods.synflow(sparsity, rounds=100)
  state = jax.jit(lambda p: pruner.init(jax.random.key(0), p, ctx))(params)
  masks = pruner.masks(params, state)
  kernels = [m for m in jax.tree.leaves(masks) if np.ndim(m)]
  n = sum(m.size for m in kernels)
  assert sum(int(m.sum()) for m in kernels) == n - round(sparsity * n)
  # iterating differs from scoring once: the 100 rounds avoid the one-shot ranking's collapse
  one_shot = pj.methods.synflow(sparsity, rounds=1)
  once = one_shot.masks(params, one_shot.init(jax.random.key(0), params, ctx))
  assert any(bool(np.any(a != b)) for a, b in zip(jax.tree.leaves(masks), jax.tree.leaves(once), strict=True))
  assert int(pruner.metrics(params, state)["collapsed_layers"]) == 0


def test_random_erk_keeps_each_layer_at_its_erk_density():
  model, params, ctx, _ = _setup(MLP(widths=(40, 30)))
  pruner = pj.methods.random_pruning(0.8, distribution="erk")
  masks = pruner.masks(params, pruner.init(jax.random.key(3), params, ctx))
  sel = pj.selection.resolve(None, params)
  fractions = pj.distributions.erk(params, 0.8, selection=sel)
  for m, f, p in zip(
    jax.tree.leaves(masks), jax.tree.leaves(fractions), jax.tree.leaves(params), strict=True
  ):
    if np.ndim(m):
      assert int(m.sum()) == p.size - round(float(f) * p.size)
  other = pruner.masks(params, pruner.init(jax.random.key(4), params, ctx))
  assert any(
    bool(np.any(a != b)) for a, b in zip(jax.tree.leaves(masks), jax.tree.leaves(other), strict=True)
  )


def test_a_layer_that_loses_every_weight_is_reported_as_collapsed():
  model, params, ctx, _ = _setup()

  def last_layer_worthless(key, p, context):  # every weight of Dense_2 scores below the rest
    return jax.tree_util.tree_map_with_path(
      lambda path, w: jnp.zeros_like(w) if "Dense_2" in jax.tree_util.keystr(path) else jnp.abs(w) + 1, p
    )

  n_last = params["Dense_2"]["kernel"].size
  total = sum(params[k]["kernel"].size for k in params)
  pruner = pj.methods.at_init(last_layer_worthless, n_last / total)
  state = pruner.init(jax.random.key(0), params, ctx)
  assert not bool(state.buffers.masks["Dense_2"]["kernel"].any())
  assert int(pruner.metrics(params, state)["collapsed_layers"]) == 1


def test_pruning_at_init_names_what_it_needs():
  _, params, ctx, _ = _setup()
  with pytest.raises(
    ValueError, match=r"snip scores at init from the InitContext's loss_fn, batches; it has no batches"
  ):
    pj.methods.snip(0.5).init(jax.random.key(0), params, ctx._replace(batches=()))
  with pytest.raises(ValueError, match="synflow scores at init .* no apply_fn"):
    pj.methods.synflow(0.5).init(jax.random.key(0), params, None)
  plain = ctx._replace(loss_fn=lambda p, b: ctx.loss_fn(p, b))
  with pytest.raises(
    ValueError, match="grasp: temperature=200.0 needs an InitContext.loss_fn taking temperature="
  ):
    pj.methods.grasp(0.5).init(jax.random.key(0), params, plain)
  pj.methods.grasp(0.5, temperature=1.0).init(jax.random.key(0), params, plain)  # the plain loss is enough
  with pytest.raises(ValueError, match="grasp: temperature must be positive"):
    pj.methods.grasp(0.5, temperature=0.0)
  with pytest.raises(ValueError, match="synflow: rounds must be an int >= 1"):
    pj.methods.synflow(0.5, rounds=0)
  with pytest.raises(ValueError, match=r"random_pruning: distribution='erk2' is unknown"):
    pj.methods.random_pruning(0.5, distribution="erk2")
  with pytest.raises(ValueError, match="snip: sparsity"):
    pj.methods.snip(1.0)


def test_a_shuffled_mask_keeps_each_layers_count_and_moves_its_positions():
  model, params, ctx, _ = _setup(MLP(widths=(40, 30)))
  plain = pj.methods.snip(0.9)
  shuffled = pj.methods.snip(0.9, shuffle=True)
  a = plain.masks(params, plain.init(jax.random.key(0), params, ctx))
  b = shuffled.masks(params, shuffled.init(jax.random.key(0), params, ctx))
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    assert int(np.sum(x)) == int(np.sum(y))
    if np.ndim(x) and 0 < np.sum(x) < np.size(x):
      assert not np.array_equal(x, y)
