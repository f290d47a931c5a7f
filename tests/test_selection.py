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


def test_an_equinox_module_of_bools_is_a_selection_not_a_function():
  import equinox as eqx

  model = eqx.nn.MLP(3, 2, 4, 1, key=jax.random.key(0))
  params, _ = eqx.partition(model, eqx.is_inexact_array)
  sel = pj.select(params)  # an MLP of bools: callable, but a selection
  assert callable(sel)
  resolved = pj.selection.resolve(sel, params)
  assert jax.tree.leaves(resolved) == jax.tree.leaves(sel)
  pruner = pj.methods.magnitude_pruning(0.5, selection=sel)
  masks = pruner.masks(params, pruner.init(jax.random.key(1), params))
  assert int(pj.count_kept(masks)[0]) == (12 + 8) // 2


def test_default_selection_skips_biases_with_more_than_one_axis():
  import equinox as eqx

  conv = eqx.nn.Conv2d(3, 8, 3, key=jax.random.key(0))
  assert conv.bias.shape == (8, 1, 1)
  sel = pj.select(conv)
  assert sel.weight is True and sel.bias is False
  attention = {"query": {"kernel": jnp.ones((16, 4, 4)), "bias": jnp.ones((4, 4))}}
  assert pj.select(attention) == {"query": {"kernel": True, "bias": False}}
