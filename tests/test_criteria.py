import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import eqx_module, linen_params

import pruning_jax as pj
from pruning_jax import criteria


def test_elementwise_criteria_match_numpy():
  params = linen_params()
  grads = jax.tree.map(lambda p: jnp.cos(p), params)
  f = jax.jit(
    lambda p, g: (
      criteria.magnitude(p),
      criteria.gradient(g),
      criteria.saliency(p, g),
      criteria.movement(p, g),
    )
  )
  mag, grad, sal, mov = f(params, grads)
  for p, g, a, b, c, d in zip(
    *(jax.tree.leaves(t) for t in (params, grads, mag, grad, sal, mov)), strict=True
  ):
    p, g = np.asarray(p), np.asarray(g)
    np.testing.assert_allclose(np.asarray(a), np.abs(p))
    np.testing.assert_allclose(np.asarray(b), np.abs(g))
    np.testing.assert_allclose(np.asarray(c), np.abs(p * g), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(d), -p * g, rtol=1e-6)


def test_random_is_keyed():
  params = linen_params()
  a = criteria.random(jax.random.key(0), params)
  b = criteria.random(jax.random.key(0), params)
  c = criteria.random(jax.random.key(1), params)
  k = lambda t: np.asarray(t["params"]["Dense_0"]["kernel"])
  np.testing.assert_array_equal(k(a), k(b))
  assert not np.array_equal(k(a), k(c))
  assert (k(a) >= 0).all() and (k(a) < 1).all()


def test_channel_norm_and_bn_scale():
  params = linen_params()
  cn = criteria.channel_norm(params, ord=2)
  k = np.asarray(params["params"]["Conv_0"]["kernel"])
  np.testing.assert_allclose(
    np.asarray(cn["params"]["Conv_0"]["kernel"]), np.sqrt((k**2).sum((0, 1, 2), keepdims=True)), rtol=1e-6
  )
  params["params"]["BatchNorm_0"] = {"scale": jnp.arange(-4.0, 4.0), "bias": jnp.zeros(8)}
  sc = criteria.bn_scale(params, {"params/Conv_0/kernel": "params/BatchNorm_0/scale"})
  np.testing.assert_array_equal(
    np.asarray(sc["params"]["Conv_0"]["kernel"]).ravel(), np.abs(np.arange(-4.0, 4.0))
  )
  masks = pj.masks_from_scores(
    sc, 0.25, structure="channels", selection=pj.select(params, include="Conv_0/kernel")
  )
  np.testing.assert_array_equal(
    np.asarray(masks["params"]["Conv_0"]["kernel"]).ravel(), [1, 1, 1, 1, 0, 0, 1, 1]
  )
  with pytest.raises(ValueError, match="not in params"):
    criteria.bn_scale(params, {"params/Conv_9/kernel": "params/BatchNorm_0/scale"})
  with pytest.raises(ValueError, match="channels"):
    criteria.bn_scale(params, {"params/Dense_0/kernel": "params/BatchNorm_0/scale"})


def test_non_array_leaves_pass_through():
  m = eqx_module()
  scores = criteria.magnitude(m)
  assert scores.activation is m.activation


def test_mismatched_grads():
  with pytest.raises(ValueError, match="same pytree structure"):
    criteria.saliency({"a": jnp.ones(2)}, {"b": jnp.ones(2)})
