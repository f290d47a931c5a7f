"""Mask pytrees: init, apply, counting, and scores -> exact masks.

A mask has exactly the params' structure. A selected leaf holds a ``bool`` array of the
param's shape (or a shape that broadcasts to it); an unselected leaf holds a 0-d ``True``.

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
  """All-kept masks: ``ones(shape, bool)`` on selected leaves, 0-d True elsewhere."""
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
  """Raises ValueError listing every leaf path where ``masks`` does not fit ``params``."""
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
  """``params`` with removed entries set to zero; dtypes (bfloat16 too) and non-array leaves
  are left as they are. Gradients flow to kept entries only."""
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


def count_kept(
  masks: PyTree, params: PyTree | None = None, *, selection: PyTree | None = None
) -> tuple[jax.Array, jax.Array]:
  """(kept, total) number of weights over the counted leaves.

  Counted leaves are those of ``selection`` when given, else every leaf whose mask is not 0-d
  (the selected ones). Pass ``params`` when masks are broadcast (structured) shapes, so each
  mask entry counts for the weights it covers; pass ``selection=all True`` with ``params`` to
  count over all parameters.
  """
  leaves = _counted_leaves(masks, params, selection)
  if not leaves:
    raise ValueError(
      "No leaf is counted: every mask is 0-d (unselected). Fix: pass selection= or masks that "
      "select at least one leaf."
    )
  kept = jnp.zeros((), jnp.int32)
  total = 0
  for path, m, shape in leaves:
    try:
      full = jnp.broadcast_to(m, shape)
    except ValueError as e:
      raise ValueError(
        f"mask at {keystr(path)} has shape {np.shape(m)} which does not broadcast to {shape}. "
        "Fix: pass params= so broadcast (structured) masks are counted per weight."
      ) from e
    kept = kept + jnp.sum(full, dtype=jnp.int32)
    total += int(np.prod(shape, dtype=np.int64))
  return kept, jnp.asarray(total, jnp.int32)


def density(masks: PyTree, params: PyTree | None = None, *, selection: PyTree | None = None) -> jax.Array:
  """Kept fraction of the counted weights (see :func:`count_kept`)."""
  kept, total = count_kept(masks, params, selection=selection)
  return kept / total


def sparsity(masks: PyTree, params: PyTree | None = None, *, selection: PyTree | None = None) -> jax.Array:
  """Removed fraction of the counted weights (see :func:`count_kept`)."""
  kept, total = count_kept(masks, params, selection=selection)
  return (total - kept) / total


class LeafSummary(NamedTuple):
  path: str  # slash path, as selection regexes see it
  shape: tuple[int, ...]
  kept: int
  total: int

  @property
  def density(self) -> float:
    return self.kept / self.total if self.total else 1.0


def mask_summary(masks: PyTree, params: PyTree | None = None) -> list[LeafSummary]:
  """Host-side per-leaf table of every leaf: (path, shape, kept, total). Unselected leaves
  (0-d True masks) count as fully kept when ``params`` is given, and are skipped otherwise."""
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
    TypeError: a selected leaf with non-floating scores.
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
  v = static_value(fraction)
  if v is None or float(v) == 0.0:
    return  # 0 means "whatever the structure gives"
  if abs(float(v) - structure.fixed_sparsity) > 1e-9:
    raise ValueError(
      f"{structure.name} fixes sparsity at {structure.fixed_sparsity:g}, but {float(v):g} was "
      f"asked for {keystr(path)}. Fix: pass sparsity=0 (whatever the structure gives) or "
      f"{structure.fixed_sparsity:g}."
    )


def masks_equal(a: PyTree, b: PyTree) -> bool:
  """Host-side exact equality of two mask trees."""
  check_structure(a, b, names=("first masks", "second masks"))
  return all(
    bool(np.array_equal(np.asarray(x), np.asarray(y)))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
  )


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
)
