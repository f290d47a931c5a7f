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
