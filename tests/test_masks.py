import chex
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import ALL_TREES, linen_params, np_keep
from hypothesis import given
from hypothesis import strategies as st

import pruning_jax as pj
from pruning_jax import structures

VALUES = [-2.0, -0.5, 0.0, 0.5, 0.5, 1.0, 3.0]  # few distinct values: ties everywhere
# a few fixed layouts so compiled functions are reused across examples
LAYOUTS = [((4, 8),), ((4, 8), (2, 2, 4, 4)), ((8, 4), (3, 4), (2, 2, 4, 4))]
STRUCTS = {
  "unstructured": lambda: structures.unstructured(),
  "channels": lambda: structures.channels(-1),
  "input_channels": lambda: structures.channels(-2, reduce="l2"),
  "blocks": lambda: structures.blocks((1, 2)),
}


@st.composite
def tied_trees(draw):
  dtype = draw(st.sampled_from([jnp.float32, jnp.bfloat16]))
  tree = {}
  for i, shape in enumerate(draw(st.sampled_from(LAYOUTS))):
    vals = draw(st.lists(st.sampled_from(VALUES), min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
    tree[f"layer{i}"] = {
      "kernel": jnp.asarray(np.reshape(vals, shape), dtype),
      "bias": jnp.zeros(shape[-1], dtype),
    }
  return tree


def _reference(scores, s, structure, scope, normalize):
  """Unit scores from the structure (tested against NumPy in test_structures), removal by the
  NumPy tie rule; returns [(path, expected full mask, removed units, units)]."""
  sel = pj.select(scores)
  leaves = [
    (p, x)
    for (p, x), c in zip(jax.tree_util.tree_flatten_with_path(scores)[0], jax.tree.leaves(sel), strict=True)
    if c
  ]
  units = [np.asarray(structure.reduce(x, p).astype(jnp.float32)) for p, x in leaves]
  if scope == "global":
    if normalize == "l2":
      units = [u / (np.sqrt(np.sum(u.astype(np.float32) ** 2)) or 1.0) for u in units]
    n = sum(u.size for u in units)
    keeps = np_keep(units, round(s * n))
  else:
    keeps = [np_keep([u], round(s * u.size))[0] for u in units]
  return [
    (p, np.asarray(structure.expand(jnp.asarray(k), x.shape)), int((~k).sum()), u.size)
    for (p, x), k, u in zip(leaves, keeps, units, strict=True)
  ]


_JITTED = {}


def _masks_fn(struct_name, scope, normalize):
  key = (struct_name, scope, normalize)
  if key not in _JITTED:  # one compiled function per configuration: examples reuse it
    structure = STRUCTS[struct_name]()
    _JITTED[key] = jax.jit(
      lambda sc, s: pj.masks_from_scores(sc, s, structure=structure, scope=scope, normalize=normalize)
    )
  return _JITTED[key]


@given(
  tied_trees(),
  st.floats(0.0, 0.99),
  st.sampled_from(sorted(STRUCTS)),
  st.sampled_from(["layer", "global"]),
  st.sampled_from([None, "l2"]),
)
def test_exact_sparsity_every_structure_and_scope(scores, s, struct_name, scope, normalize):
  masks = _masks_fn(struct_name, scope, normalize)(scores, s)
  expected = _reference(scores, s, STRUCTS[struct_name](), scope, normalize)
  got = {jax.tree_util.keystr(p): m for p, m in jax.tree_util.tree_flatten_with_path(masks)[0]}
  for path, ref, _, _ in expected:
    np.testing.assert_array_equal(np.asarray(got[jax.tree_util.keystr(path)]), ref)
  removed = [r for _, _, r, _ in expected]
  sizes = [n for _, _, _, n in expected]
  if scope == "global":
    assert sum(removed) == round(s * sum(sizes))
  else:
    assert removed == [round(s * n) for n in sizes]
  for leaf in scores:  # unselected biases: 0-d True
    assert masks[leaf]["bias"].shape == () and bool(masks[leaf]["bias"])


@given(tied_trees(), st.sampled_from([(2, 4), (1, 4), (4, 4)]))
def test_nm_keeps_n_of_every_m(scores, nm_):
  n, m = nm_
  masks = jax.jit(lambda sc: pj.masks_from_scores(sc, 0.0, structure=pj.nm(n, m)))(scores)
  for name, leaf in scores.items():
    keep = np.asarray(masks[name]["kernel"])
    groups = keep.reshape(-1, m)
    assert (groups.sum(-1) == n).all()
    vals = np.asarray(leaf["kernel"].astype(jnp.float32)).reshape(-1, m)
    for g, v in zip(groups, vals, strict=True):
      ref = np.zeros(m, bool)
      ref[np.argsort(-v, kind="stable")[:n]] = True
      np.testing.assert_array_equal(g, ref)


def test_explicit_per_leaf_sparsities():
  params = linen_params()
  sel = pj.select(params)
  per_leaf = jax.tree.map(lambda s: 0.0, sel)
  per_leaf["params"]["Conv_0"]["kernel"] = 0.25
  per_leaf["params"]["Dense_0"]["kernel"] = 0.5
  per_leaf["params"]["Dense_1"]["kernel"] = 0.9
  masks = pj.masks_from_scores(pj.criteria.magnitude(params), per_leaf)
  for name, s in (("Conv_0", 0.25), ("Dense_0", 0.5), ("Dense_1", 0.9)):
    m = masks["params"][name]["kernel"]
    assert int((~m).sum()) == round(s * m.size)


def test_structured_channels_remove_whole_filters():
  params = linen_params()
  masks = pj.masks_from_scores(pj.criteria.magnitude(params), 0.5, structure="channels", scope="layer")
  k = np.asarray(masks["params"]["Conv_0"]["kernel"])
  per_filter = k.reshape(-1, 8)
  assert (per_filter.all(0) | ~per_filter.any(0)).all()  # each filter all-in or all-out
  assert int((~per_filter.all(0)).sum()) == 4


def test_channel_scores_of_broadcast_shape():
  params = linen_params()
  scores = pj.criteria.channel_norm(params, ord=2)
  masks = pj.masks_from_scores(scores, 0.25, structure="channels")
  m = masks["params"]["Conv_0"]["kernel"]
  assert m.shape == (1, 1, 1, 8) and int((~m).sum()) == 2
  # counted per weight with params
  kept, total = pj.count_kept(masks, params=params)
  assert int(total) == 3 * 3 * 3 * 8 + 32 * 16 + 16 * 10
  assert int(kept) == 3 * 3 * 3 * 6 + 32 * 12 + 16 * 8
  with pytest.raises(ValueError, match="broadcast"):
    pj.apply_masks({"a": jnp.ones((3, 4))}, {"a": jnp.ones((2, 4), bool)})


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_apply_preserves_dtype_and_zeroes(dtype):
  params = linen_params(dtype=dtype)
  masks = pj.masks_from_scores(pj.criteria.magnitude(params), 0.7)
  out = jax.jit(pj.apply_masks)(params, masks)
  chex.assert_trees_all_equal_dtypes(out, params)
  chex.assert_trees_all_equal_shapes(out, params)
  for p, o, m in zip(jax.tree.leaves(params), jax.tree.leaves(out), jax.tree.leaves(masks), strict=True):
    np.testing.assert_array_equal(
      np.asarray(o, np.float32), np.where(np.asarray(m), np.asarray(p, np.float32), 0)
    )


def test_apply_gradient_is_masked():
  params = {"w": jnp.arange(1.0, 7.0).reshape(2, 3)}
  masks = {"w": jnp.array([[True, False, True], [False, True, True]])}
  g = jax.jit(jax.grad(lambda p: jnp.sum(pj.apply_masks(p, masks)["w"] ** 2)))(params)
  np.testing.assert_array_equal(
    np.asarray(g["w"]), np.where(np.asarray(masks["w"]), 2 * np.asarray(params["w"]), 0)
  )


def test_init_density_summary():
  params = linen_params()
  masks = pj.init_masks(params)
  assert float(pj.density(masks)) == 1.0
  masks = pj.masks_from_scores(pj.criteria.magnitude(params), 0.9, scope="global")
  n = 3 * 3 * 3 * 8 + 32 * 16 + 16 * 10
  assert int(pj.count_kept(masks)[0]) == n - round(0.9 * n)
  np.testing.assert_allclose(float(pj.sparsity(masks)), round(0.9 * n) / n, rtol=1e-6)
  summary = pj.mask_summary(masks, params=params)
  assert [s.path for s in summary] == [
    "params/Conv_0/bias",
    "params/Conv_0/kernel",
    "params/Dense_0/bias",
    "params/Dense_0/kernel",
    "params/Dense_1/bias",
    "params/Dense_1/kernel",
  ]
  assert sum(s.kept for s in summary if s.path.endswith("kernel")) == n - round(0.9 * n)
  assert all(s.kept == s.total for s in summary if s.path.endswith("bias"))
  all_sel = jax.tree.map(lambda _: True, params)
  total_all = sum(x.size for x in jax.tree.leaves(params))
  assert int(pj.count_kept(masks, params=params, selection=all_sel)[1]) == total_all


@pytest.mark.parametrize("flavour", sorted(ALL_TREES))
def test_pytree_generic(flavour):
  params = ALL_TREES[flavour]()
  scores = pj.criteria.magnitude(params)
  # filter_jit: Equinox modules carry non-array leaves (activation functions)
  masks = eqx.filter_jit(lambda s: pj.masks_from_scores(s, 0.5, scope="global"))(scores)
  pj.check_masks(params, masks)
  out = pj.apply_masks(params, masks)
  assert jax.tree_util.tree_structure(out) == jax.tree_util.tree_structure(params)
  arrays = [x for x in jax.tree.leaves(params) if pj.tree.is_array(x) and x.ndim > 1]
  n = sum(x.size for x in arrays)
  assert int(pj.count_kept(masks)[0]) == n - round(0.5 * n)


# ---- errors name the path and the fix ------------------------------------------------------


def test_mismatched_mask_tree_names_every_path():
  params = linen_params()
  masks = pj.init_masks(params)
  del masks["params"]["Dense_1"]
  masks["params"]["Extra"] = {"kernel": jnp.ones((2, 2), bool)}
  with pytest.raises(ValueError) as e:
    pj.apply_masks(params, masks)
  msg = str(e.value)
  assert "['params']['Dense_1']['kernel']" in msg and "['params']['Dense_1']['bias']" in msg
  assert "['params']['Extra']['kernel']" in msg and "Fix" in msg


def test_bad_mask_leaves_are_all_named():
  params = {"a": jnp.ones((2, 3)), "b": jnp.ones((4,))}
  with pytest.raises(ValueError) as e:
    pj.check_masks(params, {"a": jnp.ones((2, 3)), "b": jnp.ones((5,), bool)})
  assert "['a']" in str(e.value) and "bool" in str(e.value) and "['b']" in str(e.value)


@pytest.mark.parametrize("s", [-0.1, 1.0, 1.5, float("nan")])
def test_sparsity_out_of_range(s):
  with pytest.raises(ValueError, match=r"\[0, 1\)"):
    pj.masks_from_scores(linen_params(), s)


def test_per_leaf_sparsity_out_of_range_names_leaf():
  params = linen_params()
  per_leaf = jax.tree.map(lambda _: 0.5, params)
  per_leaf["params"]["Dense_0"]["kernel"] = 1.2
  with pytest.raises(ValueError, match=r"\['Dense_0'\]\['kernel'\]"):
    pj.masks_from_scores(params, per_leaf)
  with pytest.raises(ValueError, match="scope='layer'"):
    pj.masks_from_scores(params, per_leaf, scope="global")


def test_nm_axis_not_divisible():
  params = {"w": jnp.ones((4, 6))}
  with pytest.raises(ValueError, match=r"divisible by 4.*\['w'\]"):
    pj.masks_from_scores(params, 0.5, structure=pj.nm(2, 4))
  with pytest.raises(ValueError, match="scope='layer'"):
    pj.masks_from_scores({"w": jnp.ones((4, 8))}, 0.5, structure=pj.nm(2, 4), scope="global")
  with pytest.raises(ValueError, match="fixes sparsity at 0.5"):
    pj.masks_from_scores({"w": jnp.ones((4, 8))}, 0.9, structure=pj.nm(2, 4))


def test_unknown_structure_scope_normalize():
  params = linen_params()
  with pytest.raises(ValueError, match="Unknown structure 'rows'"):
    pj.masks_from_scores(params, 0.5, structure="rows")
  with pytest.raises(ValueError, match="Unknown scope"):
    pj.masks_from_scores(params, 0.5, scope="model")
  with pytest.raises(ValueError, match="Unknown normalize"):
    pj.masks_from_scores(params, 0.5, scope="global", normalize="l3")


def test_integer_params_and_empty_selection():
  with pytest.raises(TypeError, match=r"\['steps'\].*int32.*Fix"):
    pj.init_masks({"w": jnp.ones((2, 2)), "steps": jnp.zeros((2, 2), jnp.int32)}, {"w": True, "steps": True})
  with pytest.raises(ValueError, match="empty.*Fix"):
    pj.masks_from_scores({"b": jnp.ones(3)}, 0.5)
  with pytest.raises(ValueError, match="empty"):
    pj.init_masks(linen_params(), pj.select(linen_params(), include="nothing-matches"))


def test_blocks_not_divisible():
  with pytest.raises(ValueError, match=r"\['w'\].*not divisible"):
    pj.masks_from_scores({"w": jnp.ones((3, 5))}, 0.5, structure=pj.blocks((2, 2)))


@pytest.mark.parametrize("bad", ["0.5", None, jnp.array([0.5, 0.5])])
def test_a_sparsity_that_is_not_a_number_is_named_as_such(bad):
  with pytest.raises(TypeError, match="sparsity must be a number in"):
    pj.masks_from_scores({"w": jnp.ones((4, 4))}, bad)


@pytest.mark.parametrize("bad", [1.5, -0.5, float("nan")])
def test_a_traced_sparsity_outside_the_range_stops_the_computation(bad):
  scores = {"w": jnp.arange(16.0).reshape(4, 4)}
  f = jax.jit(lambda s: pj.masks_from_scores(scores, s, scope="global"))
  assert int(f(0.5)["w"].sum()) == 8
  with pytest.raises(Exception, match=r"must be in \[0, 1\)"):
    jax.block_until_ready(f(bad))
