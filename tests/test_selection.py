import jax
import jax.numpy as jnp
import pytest
from helpers import eqx_module, linen_params, nnx_state, tuple_params

import pruning_jax as pj
from pruning_jax import selection as sel
from pruning_jax import tree


def test_default_selects_float_kernels_only():
  params = linen_params()
  params["params"]["step"] = jnp.zeros((2, 2), jnp.int32)
  s = pj.select(params)
  assert s["params"]["Conv_0"] == {"kernel": True, "bias": False}
  assert s["params"]["step"] is False


def test_include_exclude_predicate():
  params = linen_params()
  s = pj.select(params, include=r"Dense_\d/kernel")
  assert sel.selected_paths(s) == sel.selected_paths(pj.select(params, exclude="Conv"))
  s = pj.select(params, include=[r"Conv_0/kernel", r"Dense_1/bias"])
  assert [tree.path_str(p) for p in sel.selected_paths(s)] == ["params/Conv_0/kernel", "params/Dense_1/bias"]
  s = pj.select(params, predicate=lambda path, x: x.ndim == 4)
  assert [tree.path_str(p) for p in sel.selected_paths(s)] == ["params/Conv_0/kernel"]


def test_exclude_first_last_natural_order():
  params = {f"Dense_{i}": {"kernel": jnp.ones((2, 2))} for i in (0, 1, 2, 10)}
  s = pj.select(params)
  assert sel.layer_order(s) == ["Dense_0/kernel", "Dense_1/kernel", "Dense_2/kernel", "Dense_10/kernel"]
  assert sel.layer_order(pj.exclude_last(pj.exclude_first(s))) == ["Dense_1/kernel", "Dense_2/kernel"]
  order = ["Dense_10/kernel", "Dense_2/kernel", "Dense_1/kernel", "Dense_0/kernel"]
  assert sel.layer_order(pj.exclude_first(s, order=order), order=order)[0] == "Dense_2/kernel"
  with pytest.raises(ValueError, match="not in the given order"):
    sel.layer_order(s, order=order[:2])


@pytest.mark.parametrize(
  "make,expected",
  [
    (nnx_state, ["layers/0/kernel/value", "layers/1/kernel/value"]),
    (eqx_module, ["layers/0/weight", "layers/1/weight", "layers/2/weight"]),
    (tuple_params, ["0/kernel", "1/0/kernel"]),
  ],
)
def test_paths_for_every_pytree_flavour(make, expected):
  s = pj.select(make())
  assert [tree.path_str(p) for p in sel.selected_paths(s)] == expected


def test_check_structure_names_paths():
  with pytest.raises(ValueError) as e:
    tree.check_structure({"a": 1, "b": {"c": 2}}, {"a": 1, "b": {"d": 2}})
  assert "['b']['c']" in str(e.value) and "['b']['d']" in str(e.value)


def test_split_key_like_is_independent_and_structured():
  params = linen_params()
  keys = tree.split_key_like(jax.random.key(0), params)
  assert jax.tree.structure(keys) == jax.tree.structure(params)
  flat = [jax.random.key_data(k).tolist() for k in jax.tree.leaves(keys)]
  assert len({str(f) for f in flat}) == len(flat)


def test_validate_errors():
  with pytest.raises(TypeError, match="int32"):
    sel.validate({"w": jnp.ones((2, 2), jnp.int32)}, {"w": True})
  with pytest.raises(TypeError, match="not an array"):
    sel.validate({"f": jax.nn.relu}, {"f": True})
  with pytest.raises(ValueError, match="empty"):
    sel.validate({"w": jnp.ones(2)}, {"w": False})
