"""Path-aware pytree helpers.

Everything in pruning_jax is pytree-generic: Flax linen param dicts, Flax NNX ``State``,
Equinox-style modules (with non-array leaves such as activation functions) and plain
tuples/lists/NamedTuples. Leaves are addressed by their key path; regexes match a
slash-joined rendering of it (``"params/Conv_0/kernel"``, ``"layers/0/weight"``) and errors
name the path with ``jax.tree_util.keystr``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

PyTree = Any
KeyPath = tuple[Any, ...]


def key_name(key: Any) -> str:
  """One key-path entry as plain text: dict key, attribute name or sequence index."""
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def path_str(path: KeyPath) -> str:
  """Slash-joined path used for regex selection, e.g. ``"params/Dense_0/kernel"``."""
  return "/".join(key_name(k) for k in path)


def keystr(path: KeyPath) -> str:
  """The path as ``jax.tree_util.keystr`` writes it (used in error messages)."""
  return jax.tree_util.keystr(path) or "<root>"


def is_array(x: Any) -> bool:
  """True for JAX/NumPy arrays (and tracers, and ShapeDtypeStructs): the leaves we can prune."""
  return isinstance(x, (jax.Array, np.ndarray, np.generic, jax.ShapeDtypeStruct)) or (
    hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, type)
  )


def leaves_with_paths(tree: PyTree) -> list[tuple[KeyPath, Any]]:
  """``[(path, leaf), ...]`` in flatten order."""
  return jax.tree_util.tree_flatten_with_path(tree)[0]


def check_structure(a: PyTree, b: PyTree, *, names: Sequence[str] = ("params", "masks")) -> None:
  """Raises ValueError naming every leaf path that is in one tree and not the other.

  Args:
    a, b: the two pytrees that must have the same structure.
    names: how to call them in the message.
  """
  ta, tb = jax.tree_util.tree_structure(a), jax.tree_util.tree_structure(b)
  if ta == tb:
    return
  pa = {keystr(p) for p, _ in leaves_with_paths(a)}
  pb = {keystr(p) for p, _ in leaves_with_paths(b)}
  only_a, only_b = sorted(pa - pb), sorted(pb - pa)
  lines = [f"{names[0]} and {names[1]} must have the same pytree structure."]
  if only_a:
    lines.append(f"  leaves in {names[0]} but not in {names[1]}: {', '.join(only_a)}")
  if only_b:
    lines.append(f"  leaves in {names[1]} but not in {names[0]}: {', '.join(only_b)}")
  if not (only_a or only_b):
    lines.append(f"  same leaf paths but different node types: {ta} vs {tb}")
  lines.append(
    f"  Fix: build {names[1]} from {names[0]} (e.g. pj.init_masks(params)) so both share one "
    "structure, or tree_map over the same container types."
  )
  raise ValueError("\n".join(lines))


def split_key_like(key: jax.Array, tree: PyTree) -> PyTree:
  """One independent PRNG key per leaf of ``tree``, arranged like ``tree``.

  Leaf i (in flatten order) gets ``fold_in(key, i)``.
  """
  leaves, treedef = jax.tree_util.tree_flatten(tree)
  keys = [jax.random.fold_in(key, i) for i in range(len(leaves))]
  return jax.tree_util.tree_unflatten(treedef, keys)


def static_value(x: Any) -> Any:
  """``x`` as a Python/NumPy value when it is concrete, else None (it is traced)."""
  try:
    return np.asarray(x) if not isinstance(x, (int, float, bool)) else x
  except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
    return None
