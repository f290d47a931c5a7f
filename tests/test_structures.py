import jax.numpy as jnp
import numpy as np
import pytest

from pruning_jax import structures


def test_channels_reduce_matches_numpy():
  x = np.random.default_rng(0).normal(size=(3, 3, 4, 5)).astype(np.float32)
  for axis, reduce, ref in [
    (-1, "l1", np.abs(x).sum((0, 1, 2), keepdims=True)),
    (-2, "l2", np.sqrt((x**2).sum((0, 1, 3), keepdims=True))),
    (0, "max", x.max((1, 2, 3), keepdims=True)),
    (-1, "mean", x.mean((0, 1, 2), keepdims=True)),
  ]:
    got = structures.channels(axis, reduce).reduce(jnp.asarray(x), ())
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-5)


def test_blocks_reduce_and_expand():
  x = np.arange(2 * 4 * 6, dtype=np.float32).reshape(2, 4, 6)
  s = structures.blocks((2, 3))
  u = np.asarray(s.reduce(jnp.asarray(x), ()))
  ref = np.abs(x).reshape(2, 2, 2, 2, 3).sum((2, 4))
  np.testing.assert_array_equal(u, ref)
  keep = np.array([[[True, False], [False, True]]] * 2)
  full = np.asarray(s.expand(jnp.asarray(keep), x.shape))
  np.testing.assert_array_equal(full, np.repeat(np.repeat(keep, 2, 1), 3, 2))


def test_resolve_and_bad_arguments():
  assert structures.resolve("filters").name == "channels(axis=-1)"
  with pytest.raises(ValueError, match="Unknown structure"):
    structures.resolve("diagonal")
  with pytest.raises(ValueError, match="0 < n <= m"):
    structures.nm(5, 4)
  with pytest.raises(ValueError, match="Unknown reduce"):
    structures.channels(reduce="median")
  with pytest.raises(ValueError, match=r"axis 4 is out of range.*\['k'\]"):
    from jax.tree_util import DictKey

    structures.channels(4).reduce(jnp.ones((2, 2)), (DictKey("k"),))
