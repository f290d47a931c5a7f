import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import linen_params
from hypothesis import given
from hypothesis import strategies as st

import pruning_jax as pj
from pruning_jax import distributions


def _np_erk(shapes, s):
  """Independent ERK reference: eps solved with dense layers, densest-first."""
  sizes = np.array([np.prod(x) for x in shapes], float)
  raw = np.array([sum(x) / np.prod(x) for x in shapes])
  dense = np.zeros(len(shapes), bool)
  kept = (1 - s) * sizes.sum()
  while True:
    eps = (kept - sizes[dense].sum()) / (raw[~dense] * sizes[~dense]).sum()
    d = np.where(dense, 1, eps * raw)
    if (d <= 1 + 1e-12).all():
      return np.minimum(d, 1)
    dense[np.argmax(np.where(dense, -1, d))] = True


@given(st.floats(0.0, 0.99))
def test_erk_global_count_exact_and_densities(s):
  params = {
    "conv": jnp.ones((3, 3, 3, 16)),
    "big": jnp.ones((512, 256)),
    "head": jnp.ones((256, 10)),
    "b": jnp.ones(10),
  }
  alloc = distributions.erk(params, s)
  sel = ["big", "conv", "head"]
  n = sum(params[k].size for k in sel)
  removed = [round(alloc[k] * params[k].size) for k in sel]
  assert sum(removed) == round(s * n)
  assert alloc["b"] == 0.0
  ref = _np_erk([params[k].shape for k in sel], s)
  for k, d in zip(sel, ref, strict=True):
    assert abs((1 - alloc[k]) - d) <= 1.0 / params[k].size + 1e-9
  masks = pj.masks_from_scores(pj.criteria.magnitude(params), alloc)
  assert int(pj.count_kept(masks)[0]) == n - round(s * n)


def test_erk_makes_small_layers_dense():
  params = {"tiny": jnp.ones((3, 3, 3, 4)), "big": jnp.ones((1000, 1000))}
  alloc = distributions.erk(params, 0.9)
  assert alloc["tiny"] == 0.0 and alloc["big"] > 0.9


def test_uniform_and_resolve():
  params = linen_params()
  tree, scope = distributions.resolve("uniform", params, 0.7)
  assert (
    scope == "layer"
    and tree["params"]["Dense_0"]["kernel"] == 0.7
    and tree["params"]["Dense_0"]["bias"] == 0.0
  )
  assert distributions.resolve("global", params, 0.7) == (0.7, "global")
  with pytest.raises(ValueError, match="Unknown distribution"):
    distributions.resolve("lamp", params, 0.5)
  with pytest.raises(ValueError, match=r"\[0, 1\)"):
    distributions.erk(params, 1.0)


def test_erk_never_empties_a_layer_and_says_when_it_cannot():
  params = {"big": jnp.ones((200, 200)), "tiny": jnp.ones((2, 2))}
  alloc = pj.distributions.erk(params, 0.999)
  assert all(f < 1.0 for f in jax.tree.leaves(alloc))
  masks = pj.masks_from_scores(pj.criteria.magnitude(params), alloc, scope="layer")  # accepted as is
  assert int(pj.count_kept(masks)[0]) == 40004 - round(0.999 * 40004)
  with pytest.raises(ValueError, match="more than leaves one weight in each"):
    pj.distributions.erk({"a": jnp.ones((2, 2)), "b": jnp.ones((2, 2))}, 0.99)


@pytest.mark.parametrize("value", [np.float32(0.5), jnp.float32(0.5), np.float64(0.5), jnp.asarray(0.5)])
def test_numpy_and_0d_array_sparsities_are_accepted(value):
  params = {"a": jnp.ones((4, 4))}
  assert pj.distributions.uniform(params, value)["a"] == 0.5
  pruner = pj.methods.magnitude_pruning(value)
  assert int(pj.count_kept(pruner.masks(params, pruner.init(jax.random.key(0), params)))[0]) == 8
