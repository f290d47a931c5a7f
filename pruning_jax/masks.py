"""Mask pytrees: init, apply, counting, and scores -> exact masks.

A mask has exactly the params' structure. A selected leaf holds a ``bool`` array of the
param's shape (or a shape that broadcasts to it); an unselected leaf holds a 0-d ``True``.
Functions that take both trees take them as ``(params, masks)``; the counting functions, where
params are optional, take them as the keyword ``params=``.

Example:
  >>> import jax, jax.numpy as jnp
  >>> import pruning_jax as pj
  >>> params = {"w": jnp.arange(1., 11.).reshape(2, 5), "b": jnp.zeros(5)}
  >>> masks = pj.masks_from_scores(pj.criteria.magnitude(params), 0.3)
  >>> int(masks["w"].sum()), round(float(pj.sparsity(masks)), 6)
  (7, 0.3)
  >>> pj.apply_masks(params, masks)["w"][0]
  Array([0., 0., 0., 4., 5.], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pruning_jax import selection as sel_lib
from pruning_jax import structures as struct_lib
from pruning_jax import validation
from pruning_jax.thresholds import removal_keep_masks
from pruning_jax.tree import (
  PyTree,
  check_structure,
  is_array,
  keystr,
  leaves_with_paths,
  path_str,
  static_value,
)

SCOPES = ("layer", "global")
NORMALIZATIONS = (None, "l1", "l2", "max", "mean")


def init_masks(params: PyTree, selection: PyTree | None = None) -> PyTree:
  """All-kept masks: ``ones(shape, bool)`` on selected leaves, 0-d True elsewhere.

  Args:
    params: the parameter pytree.
    selection: bool pytree of prunable leaves; default :func:`pruning_jax.selection.select`.

  Returns:
    A mask pytree with the params' structure.

  Raises:
    ValueError: a selection that does not fit the params, or selects nothing.

  Example:
    >>> import jax.numpy as jnp
    >>> m = init_masks({"w": jnp.ones((2, 2)), "b": jnp.ones(2)})
    >>> m["w"].shape, m["b"].shape
    ((2, 2), ())
  """
  if selection is None:
    selection = sel_lib.select(params)
  sel_lib.validate(params, selection)
  return jax.tree.map(
    lambda p, s: jnp.ones(p.shape, jnp.bool_) if s else jnp.asarray(True), params, selection
  )


def _check_leaf(path, p, m) -> str | None:
  if not is_array(m):
    return f"{keystr(path)}: mask leaf is a {type(m).__name__}, expected a bool array"
  if m.dtype != jnp.bool_:
    return f"{keystr(path)}: mask dtype is {m.dtype}, expected bool"
  if is_array(p):
    try:
      if jnp.broadcast_shapes(m.shape, p.shape) != tuple(p.shape):
        raise ValueError
    except ValueError:
      return f"{keystr(path)}: mask shape {m.shape} does not broadcast to param shape {p.shape}"
  elif m.shape != ():
    return f"{keystr(path)}: non-array leaf ({type(p).__name__}) needs a 0-d True mask"
  return None


def check_masks(params: PyTree, masks: PyTree) -> None:
  """Raises ValueError listing every leaf path where ``masks`` does not fit ``params``.

  Args:
    params: the parameter pytree.
    masks: the mask pytree.

  Raises:
    ValueError: a structure mismatch, a non-bool mask, or a mask that does not broadcast to
      its param; every bad leaf is named.

  Example:
    >>> import jax.numpy as jnp
    >>> check_masks({"w": jnp.ones(2)}, {"w": jnp.ones(2, bool)})
    >>> try:
    ...   check_masks({"w": jnp.ones(2)}, {"w": jnp.ones(2)})
    ... except ValueError as e:
    ...   print(str(e).splitlines()[1])
      ['w']: mask dtype is float32, expected bool
  """
  check_structure(params, masks, names=("params", "masks"))
  problems = [
    msg
    for (path, p), (_, m) in zip(leaves_with_paths(params), leaves_with_paths(masks), strict=True)
    if (msg := _check_leaf(path, p, m)) is not None
  ]
  if problems:
    raise ValueError(
      "masks do not fit params:\n  "
      + "\n  ".join(problems)
      + "\n  Fix: build masks with pj.init_masks(params) / pj.masks_from_scores(scores, ...)."
    )


def apply_masks(params: PyTree, masks: PyTree) -> PyTree:
  """``params`` with removed entries set to zero.

  Dtypes (bfloat16 too) and non-array leaves are left as they are; gradients flow to kept
  entries only.

  Args:
    params: the parameter pytree.
    masks: the mask pytree (:func:`check_masks`).

  Returns:
    The masked params.

  Raises:
    ValueError: masks that do not fit the params.

  Example:
    >>> import jax.numpy as jnp
    >>> apply_masks({"w": jnp.array([1.0, 2.0])}, {"w": jnp.array([False, True])})["w"].tolist()
    [0.0, 2.0]
  """
  check_masks(params, masks)

  def apply(p, m):
    if not is_array(p):
      return p
    if np.ndim(m) == 0 and (concrete := static_value(m)) is not None and bool(concrete):
      return p  # an unselected leaf (concrete 0-d True): no select needed
    return jnp.where(m, p, jnp.zeros((), p.dtype))

  return jax.tree.map(apply, params, masks)


def _counted_leaves(masks, params, selection):
  """(path, mask, shape) for the leaves counted by density/summary."""
  if params is not None:
    check_masks(params, masks)
  if selection is not None:
    check_structure(masks, selection, names=("masks", "selection"))
  mleaves = leaves_with_paths(masks)
  pleaves = leaves_with_paths(params) if params is not None else [(p, None) for p, _ in mleaves]
  sleaves = leaves_with_paths(selection) if selection is not None else [None] * len(mleaves)
  out = []
  for (path, m), (_, p), s in zip(mleaves, pleaves, sleaves, strict=True):
    chosen = s[1] if s is not None else np.ndim(m) > 0
    if not chosen:
      continue
    if p is not None:
      shape = tuple(p.shape) if is_array(p) else ()
    else:
      shape = tuple(m.shape)
    out.append((path, m, shape))
  return out


_INT32_MAX = np.iinfo(np.int32).max


def _leaf_count(full: jax.Array, removed: bool) -> jax.Array:
  """Kept (or removed) entries of one leaf as float32, from exact integer counts (in rows of
  at most 2**31 - 1 where one int32 sum would overflow), so a few removed weights of a huge
  leaf are not lost to float rounding."""
  dtype = jnp.int64 if jax.config.jax_enable_x64 else jnp.int32
  if full.size <= _INT32_MAX or dtype == jnp.int64:
    rows = [full.reshape(1, -1)]
  elif full.ndim > 1 and full.size // full.shape[0] <= _INT32_MAX:
    rows = [full.reshape(full.shape[0], -1)]
  else:
    flat, chunk = full.reshape(-1), 2**30
    q = flat.size // chunk
    rows = [flat[: q * chunk].reshape(q, chunk), flat[q * chunk :].reshape(1, -1)]
  out = jnp.zeros((), jnp.float32)
  for r in rows:
    count = jnp.sum(r, axis=1, dtype=dtype)
    out = out + jnp.sum((r.shape[1] - count if removed else count).astype(jnp.float32))
  return out


def _broadcast_leaves(masks, params, selection):
  leaves = _counted_leaves(masks, params, selection)
  if not leaves:
    raise ValueError(
      "No leaf is counted: every mask is 0-d (unselected). Fix: pass selection= or masks that "
      "select at least one leaf."
    )
  out = []
  for path, m, shape in leaves:
    try:
      out.append((path, jnp.broadcast_to(m, shape), shape))
    except ValueError as e:
      raise ValueError(
        f"mask at {keystr(path)} has shape {np.shape(m)} which does not broadcast to {shape}. "
        "Fix: pass params= so broadcast (structured) masks are counted per weight."
      ) from e
  return out


def count_kept(
  masks: PyTree, *, params: PyTree | None = None, selection: PyTree | None = None
) -> tuple[jax.Array, jax.Array]:
  """(kept, total) number of weights over the counted leaves, exactly.

  Counted leaves are those of ``selection`` when given, else every leaf whose mask is not 0-d
  (the selected ones). Pass ``params`` when masks are broadcast (structured) shapes, so each
  mask entry counts for the weights it covers; pass ``selection=all True`` with ``params`` to
  count over all parameters.

  Counts are int32 while the total fits (up to 2**31 - 1 weights). Above that they are int64:
  with ``jax_enable_x64`` anywhere, and without it for concrete masks (counted on the host as
  NumPy int64); traced masks of such a model without x64 cannot be counted exactly and raise
  (:func:`density` and :func:`sparsity` work there without x64).

  Args:
    masks: a mask pytree.
    params: the params, to count broadcast masks per weight (optional).
    selection: bool pytree of the leaves to count (optional).

  Returns:
    ``(kept, total)`` as 0-d integer arrays.

  Raises:
    ValueError: nothing counted, a mask that does not broadcast to its param, or a traced count
      above 2**31 - 1 without x64.

  Example:
    >>> import jax.numpy as jnp
    >>> import pruning_jax as pj
    >>> masks = {"w": jnp.array([[True, False], [True, True]]), "b": jnp.asarray(True)}
    >>> [int(c) for c in pj.count_kept(masks)]
    [3, 4]
  """
  leaves = _broadcast_leaves(masks, params, selection)
  total = sum(int(np.prod(shape, dtype=np.int64)) for _, _, shape in leaves)
  if total <= _INT32_MAX:
    kept = sum(jnp.sum(full, dtype=jnp.int32) for _, full, _ in leaves)
    return jnp.asarray(kept, jnp.int32), jnp.asarray(total, jnp.int32)
  if jax.config.jax_enable_x64:
    kept = sum(jnp.sum(full, dtype=jnp.int64) for _, full, _ in leaves)
    return jnp.asarray(kept, jnp.int64), jnp.asarray(total, jnp.int64)
  concrete = [static_value(full) for _, full, _ in leaves]
  if any(c is None for c in concrete):
    raise ValueError(
      f"count_kept: {total} weights exceed int32 and the masks are traced, so the count cannot "
      "be exact without 64-bit integers. Fix: set jax.config.update('jax_enable_x64', True), "
      "count outside jit, or use pj.density / pj.sparsity, which need no exact count."
    )
  kept = sum(np.sum(np.asarray(c), dtype=np.int64) for c in concrete)
  return np.int64(kept), np.int64(total)


def _fraction(masks, params, selection, *, removed: bool) -> jax.Array:
  """Kept (or removed) count over the total. Up to int32 the count is exact; above it the
  per-leaf counts are summed in float32, so a model of any size needs no x64."""
  leaves = _broadcast_leaves(masks, params, selection)
  total = sum(int(np.prod(shape, dtype=np.int64)) for _, _, shape in leaves)
  if total <= _INT32_MAX:
    kept = sum(jnp.sum(full, dtype=jnp.int32) for _, full, _ in leaves)
    return ((total - kept) if removed else kept) / total
  return sum(_leaf_count(full, removed) for _, full, _ in leaves) / jnp.float32(total)


def density(masks: PyTree, *, params: PyTree | None = None, selection: PyTree | None = None) -> jax.Array:
  """Kept fraction of the counted weights (see :func:`count_kept`), for any model size.

  Args:
    masks: a mask pytree.
    params: the params, to count broadcast masks per weight (optional).
    selection: bool pytree of the leaves to count (optional).

  Returns:
    A 0-d float array in [0, 1].

  Raises:
    ValueError: as :func:`count_kept`.

  Example:
    >>> import jax.numpy as jnp
    >>> import pruning_jax as pj
    >>> float(pj.density({"w": jnp.array([True, False, True, True])}))
    0.75
  """
  return _fraction(masks, params, selection, removed=False)


def sparsity(masks: PyTree, *, params: PyTree | None = None, selection: PyTree | None = None) -> jax.Array:
  """Removed fraction of the counted weights (see :func:`count_kept`), for any model size.

  Args:
    masks: a mask pytree.
    params: the params, to count broadcast masks per weight (optional).
    selection: bool pytree of the leaves to count (optional).

  Returns:
    A 0-d float array in [0, 1].

  Raises:
    ValueError: as :func:`count_kept`.

  Example:
    >>> import jax.numpy as jnp
    >>> import pruning_jax as pj
    >>> float(pj.sparsity({"w": jnp.array([True, False, True, True])}))
    0.25
  """
  return _fraction(masks, params, selection, removed=True)


class LeafSummary(NamedTuple):
  """One row of :func:`mask_summary`.

  Attributes:
    path: slash path, as selection regexes see it.
    shape: the leaf's shape.
    kept: kept weights.
    total: all weights.
  """

  path: str
  shape: tuple[int, ...]
  kept: int
  total: int

  @property
  def density(self) -> float:
    return self.kept / self.total if self.total else 1.0


def mask_summary(masks: PyTree, *, params: PyTree | None = None) -> list[LeafSummary]:
  """Host-side per-leaf table: (path, shape, kept, total) with exact int counts.

  Args:
    masks: the mask pytree.
    params: when given, every array leaf is listed (unselected ones as fully kept) and
      broadcast masks count per weight; otherwise only the selected (non-0-d) masks.

  Returns:
    A list of :class:`LeafSummary`.

  Example:
    >>> import jax.numpy as jnp
    >>> mask_summary({"w": jnp.array([True, False]), "b": jnp.asarray(True)})
    [LeafSummary(path='w', shape=(2,), kept=1, total=2)]
  """
  out = []
  sel = None
  if params is not None:
    sel = jax.tree.map(lambda p: is_array(p), params)
  for path, m, shape in _counted_leaves(masks, params, sel):
    kept = int(np.sum(np.broadcast_to(np.asarray(m), shape), dtype=np.int64))
    out.append(LeafSummary(path_str(path), shape, kept, int(np.prod(shape, dtype=np.int64))))
  return out


def _check_fraction(value: Any, where: str) -> None:
  validation.fraction(value, f"sparsity for {where}", what="removed fraction (0.9 removes 90%)", traced=True)


def _n_remove(s: Any, n_units: int) -> jax.Array:
  v = static_value(s)
  if v is not None:
    return jnp.asarray(round(float(v) * n_units), jnp.int32)
  return jnp.round(jnp.asarray(s, jnp.float32) * n_units).astype(jnp.int32)


def _normalize(u: jax.Array, how: str | None) -> jax.Array:
  if how is None:
    return u
  u32 = u.astype(jnp.float32)
  norm = {
    "l1": lambda: jnp.sum(jnp.abs(u32)),
    "l2": lambda: jnp.sqrt(jnp.sum(jnp.square(u32))),
    "max": lambda: jnp.max(jnp.abs(u32)),
    "mean": lambda: jnp.mean(jnp.abs(u32)),
  }[how]()
  return u32 / jnp.where(norm > 0, norm, 1.0)


def masks_from_scores(
  scores: PyTree,
  sparsity: float | jax.Array | PyTree,
  *,
  selection: PyTree | None = None,
  structure: str | struct_lib.Structure = "unstructured",
  scope: str = "layer",
  normalize: str | None = None,
) -> PyTree:
  """Exact masks that remove the lowest-scoring units.

  Exactly ``round(s * N)`` units are removed (Python/NumPy rounding, half to even), where N is
  the number of units in the scope: per selected leaf for ``scope="layer"``, over all selected
  leaves for ``scope="global"``. Ties are broken deterministically (later units go first; see
  :mod:`pruning_jax.thresholds`). Units are weights for ``"unstructured"``, channels for
  ``"channels"``, blocks for ``blocks(...)``; N:M (``nm(n, m)``) keeps n of every m.

  Jittable: close over ``selection``/``structure``/``scope`` (static); ``sparsity`` may be traced
  (then its range is not checked, and the count is ``round(s * N)`` evaluated in float32: exact
  for a Python float, within ``N * 2**-24`` of it for a traced one).

  Args:
    scores: pytree with the params' structure; higher = more important.
    sparsity: removed fraction in [0, 1): a scalar, or a pytree like ``scores`` holding one
      fraction per leaf (explicit per-leaf sparsities, e.g. from
      :func:`pruning_jax.distributions.erk`; needs ``scope="layer"``).
    selection: bool pytree of prunable leaves; default :func:`pruning_jax.selection.select`.
    structure: unit grouping, a name or a :class:`pruning_jax.structures.Structure`.
    scope: ``"layer"`` (per leaf) or ``"global"`` (one threshold over all selected leaves).
    normalize: for ``scope="global"``, divide each leaf's unit scores by their ``"l1"``,
      ``"l2"``, ``"max"`` or ``"mean"`` (layer-normalized global ranking); None keeps raw scores.

  Returns:
    A mask pytree: bool arrays of each selected leaf's shape, 0-d True elsewhere.

  Raises:
    ValueError: unknown scope/structure/normalization, sparsity outside [0, 1), per-leaf
      sparsities with a global scope, an empty selection, or a structure that does not fit a leaf
      (each message names the leaf path).
    TypeError: a selected leaf with non-floating scores, or a sparsity that is not a number.

  Example:
    >>> import jax.numpy as jnp
    >>> scores = {"a": jnp.array([1.0, 4.0]), "b": jnp.array([2.0, 3.0, 0.5, 5.0])}
    >>> m = masks_from_scores(scores, 0.5, selection={"a": True, "b": True}, scope="global")
    >>> m["a"].tolist(), m["b"].tolist()
    ([False, True], [False, True, False, True])
  """
  if scope not in SCOPES:
    raise ValueError(f"Unknown scope {scope!r}; expected one of {SCOPES}.")
  if normalize not in NORMALIZATIONS:
    raise ValueError(f"Unknown normalize={normalize!r}; expected one of {NORMALIZATIONS}.")
  structure = struct_lib.resolve(structure)
  if selection is None:
    selection = sel_lib.select(scores)
  sel_lib.validate(scores, selection, what="selection")

  score_leaves, treedef = jax.tree_util.tree_flatten_with_path(scores)
  sel_leaves = jax.tree_util.tree_leaves(selection)
  not_a_number = isinstance(sparsity, (str, bytes, bool)) or sparsity is None
  if not_a_number or (is_array(sparsity) and np.ndim(sparsity)):
    raise TypeError(
      f"masks_from_scores: sparsity must be a number in [0, 1) or a pytree like scores with one "
      f"fraction per leaf, got {type(sparsity).__name__} {sparsity!r}. Fix: pass e.g. 0.9."
    )
  per_leaf = not (is_array(sparsity) and np.ndim(sparsity) == 0) and not isinstance(sparsity, (int, float))
  if per_leaf:
    if scope != "layer":
      raise ValueError(
        "Per-leaf sparsities need scope='layer' (a global scope has one target). Fix: pass a "
        "scalar sparsity with scope='global', or scope='layer' with the per-leaf tree."
      )
    check_structure(scores, sparsity, names=("scores", "sparsity"))
    fractions = jax.tree_util.tree_leaves(sparsity)
  else:
    fractions = [sparsity] * len(score_leaves)
  for (path, _), s, f in zip(score_leaves, sel_leaves, fractions, strict=True):
    if s:
      _check_fraction(f, keystr(path) if per_leaf else "the selection")

  chosen = [
    (i, path, leaf) for i, ((path, leaf), s) in enumerate(zip(score_leaves, sel_leaves, strict=True)) if s
  ]
  out: list[Any] = [jnp.asarray(True)] * len(score_leaves)

  if structure.local is not None:
    if scope != "layer":
      raise ValueError(
        f"{structure.name} keeps a fixed pattern in every group, so scope={scope!r} does not "
        "apply. Fix: use scope='layer'."
      )
    for (i, path, leaf), f in zip(chosen, [fractions[i] for i, _, _ in chosen], strict=True):
      _check_fixed_fraction(structure, f, path)
      out[i] = structure.local(leaf, path)
    return jax.tree_util.tree_unflatten(treedef, out)

  units = [structure.reduce(leaf, path) for _, path, leaf in chosen]
  if scope == "global":
    units = [_normalize(u, normalize) for u in units]
    groups = [0] * len(units)
    n_units = sum(int(u.size) for u in units)
    n_remove = _n_remove(sparsity, n_units)[None]
  else:
    groups = list(range(len(units)))
    n_remove = jnp.stack(
      [_n_remove(fractions[i], int(u.size)) for (i, _, _), u in zip(chosen, units, strict=True)]
    )
  keeps = removal_keep_masks(units, n_remove, groups)
  for (i, _, leaf), keep in zip(chosen, keeps, strict=True):
    out[i] = structure.expand(keep, tuple(leaf.shape))
  return jax.tree_util.tree_unflatten(treedef, out)


def _check_fixed_fraction(structure, fraction, path) -> None:
  fixed = structure.fixed_sparsity
  message = (
    f"{structure.name} fixes sparsity at {fixed:g}, but {{}} was asked for {keystr(path)}. Fix: "
    f"pass sparsity=0 (whatever the structure gives) or {fixed:g}."
  )
  v = static_value(fraction)
  if v is None:
    t = jnp.asarray(fraction, jnp.float32)
    validation.check_traced((t == 0) | (jnp.abs(t - fixed) <= 1e-6), message.format("a traced other value"))
    return
  if float(v) != 0.0 and abs(float(v) - fixed) > 1e-9:
    raise ValueError(message.format(f"{float(v):g}"))


def masks_equal(a: PyTree, b: PyTree) -> bool:
  """Host-side exact equality of two mask trees.

  Args:
    a: a mask pytree.
    b: another, with the same structure.

  Returns:
    Whether every leaf is equal.

  Raises:
    ValueError: different structures.

  Example:
    >>> import jax.numpy as jnp
    >>> masks_equal({"w": jnp.array([True])}, {"w": jnp.array([False])})
    False
  """
  check_structure(a, b, names=("first masks", "second masks"))
  return all(
    bool(np.array_equal(np.asarray(x), np.asarray(y)))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
  )


def shuffle_masks(key: jax.Array, masks: PyTree) -> PyTree:
  """Each leaf's mask with its entries permuted at random: the same count kept per leaf, at
  random positions (the layer-wise shuffle of Frankle et al., ICLR 2021, "missing the mark").

  Args:
    key: a PRNG key (one permutation per leaf is drawn from it).
    masks: a mask pytree; 0-d leaves (unselected) pass through.

  Returns:
    The shuffled masks, same structure, shapes and per-leaf counts.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> m = {"w": jnp.arange(12).reshape(3, 4) < 3, "b": jnp.asarray(True)}
    >>> s = shuffle_masks(jax.random.key(0), m)
    >>> int(s["w"].sum()), s["w"].shape, bool(s["b"])
    (3, (3, 4), True)
  """
  leaves, treedef = jax.tree.flatten(masks)
  keys = jax.random.split(key, max(len(leaves), 1))
  out = [
    jax.random.permutation(k, jnp.ravel(m)).reshape(jnp.shape(m)) if jnp.ndim(m) else m
    for k, m in zip(keys, leaves, strict=False)
  ]
  return jax.tree.unflatten(treedef, out)


__all__: Sequence[str] = (
  "init_masks",
  "apply_masks",
  "check_masks",
  "count_kept",
  "density",
  "sparsity",
  "LeafSummary",
  "mask_summary",
  "masks_from_scores",
  "masks_equal",
  "shuffle_masks",
)
