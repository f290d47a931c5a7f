"""Path-aware pytree helpers.

Everything in pruning_jax is pytree-generic: Flax linen param dicts, Flax NNX ``State``,
Equinox-style modules (with non-array leaves such as activation functions) and plain
tuples/lists/NamedTuples. Leaves are addressed by their key path; regexes match a
slash-joined rendering of it (``"params/Conv_0/kernel"``, ``"layers/0/weight"``) and errors
name the path with ``jax.tree_util.keystr``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

PyTree = Any
KeyPath = tuple[Any, ...]

__all__ = [
  "KeyPath",
  "PyTree",
  "Static",
  "check_structure",
  "is_array",
  "key_name",
  "keystr",
  "leaves_with_paths",
  "path_str",
  "split_key_like",
  "static_value",
]


def key_name(key: Any) -> str:
  """One key-path entry as plain text: dict key, attribute name or sequence index.

  Args:
    key: a ``jax.tree_util`` key (DictKey, GetAttrKey, SequenceKey, ...).

  Returns:
    The key as a string.

  Example:
    >>> import jax
    >>> key_name(jax.tree_util.DictKey("kernel")), key_name(jax.tree_util.SequenceKey(3))
    ('kernel', '3')
  """
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def path_str(path: KeyPath) -> str:
  """Slash-joined path used for regex selection, e.g. ``"params/Dense_0/kernel"``.

  Args:
    path: a key path.

  Returns:
    The path's keys joined by ``/``.

  Example:
    >>> [path_str(p) for p, _ in leaves_with_paths({"Dense_0": {"kernel": 1}, "out": [2]})]
    ['Dense_0/kernel', 'out/0']
  """
  return "/".join(key_name(k) for k in path)


def keystr(path: KeyPath) -> str:
  """The path as ``jax.tree_util.keystr`` writes it (used in error messages).

  Args:
    path: a key path.

  Returns:
    ``jax.tree_util.keystr(path)``, or ``"<root>"`` for the empty path.

  Example:
    >>> [keystr(p) for p, _ in leaves_with_paths({"a": [1]})]
    ["['a'][0]"]
  """
  return jax.tree_util.keystr(path) or "<root>"


def is_array(x: Any) -> bool:
  """True for JAX/NumPy arrays (and tracers, and ShapeDtypeStructs): the leaves we can prune.

  Args:
    x: any leaf.

  Returns:
    Whether ``x`` is array-like (has a shape and a dtype).

  Example:
    >>> import jax.numpy as jnp
    >>> is_array(jnp.ones(2)), is_array(max), is_array(3.0)
    (True, False, False)
  """
  return isinstance(x, (jax.Array, np.ndarray, np.generic, jax.ShapeDtypeStruct)) or (
    hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, type)
  )


def leaves_with_paths(tree: PyTree) -> list[tuple[KeyPath, Any]]:
  """``[(path, leaf), ...]`` in flatten order.

  Args:
    tree: any pytree.

  Returns:
    The list of (key path, leaf) pairs.

  Example:
    >>> [(keystr(p), v) for p, v in leaves_with_paths({"b": 2, "a": 1})]
    [("['a']", 1), ("['b']", 2)]
  """
  return jax.tree_util.tree_flatten_with_path(tree)[0]


def check_structure(a: PyTree, b: PyTree, *, names: Sequence[str] = ("params", "masks")) -> None:
  """Raises ValueError naming every leaf path that is in one tree and not the other.

  Args:
    a: the first pytree.
    b: the second pytree, which must have ``a``'s structure.
    names: how to call them in the message.

  Raises:
    ValueError: the structures differ; the message lists the paths in only one of them.

  Example:
    >>> check_structure({"w": 1}, {"w": 2})
    >>> try:
    ...   check_structure({"w": 1}, {"v": 2})
    ... except ValueError as e:
    ...   print(str(e).splitlines()[1])
      leaves in params but not in masks: ['w']
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

  Args:
    key: one PRNG key.
    tree: any pytree.

  Returns:
    A pytree of keys with the structure of ``tree``.

  Raises:
    TypeError: ``key`` is not one PRNG key.

  Example:
    >>> import jax
    >>> sorted(split_key_like(jax.random.key(0), {"a": 1, "b": 2}))
    ['a', 'b']
  """
  from pruning_jax import validation  # validation imports this module

  validation.prng_key(key, "key")
  leaves, treedef = jax.tree_util.tree_flatten(tree)
  keys = [jax.random.fold_in(key, i) for i in range(len(leaves))]
  return jax.tree_util.tree_unflatten(treedef, keys)


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class Static:
  """A hashable Python value carried inside a pytree as static data: no leaves, so ``jit``,
  checkpoints and ``tree.map`` pass it through (a Pruner's channel groups or MACs model).

  Attributes:
    value: the value (hashable: tuples, NamedTuples, numbers, strings).

  Example:
    >>> import jax
    >>> state = {"n": jax.numpy.ones(2), "layout": Static(("a", 3))}
    >>> len(jax.tree.leaves(state)), jax.jit(lambda s: s["layout"].value[1] * s["n"])(state).tolist()
    (1, [3.0, 3.0])
  """

  value: Any


def static_value(x: Any) -> Any:
  """``x`` as a Python/NumPy value when it is concrete, else None (it is traced).

  Args:
    x: a number, an array or a tracer.

  Returns:
    The concrete value, or None under a trace.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> seen = []
    >>> _ = jax.jit(lambda x: seen.append(static_value(x)) or x)(1.0)
    >>> int(static_value(jnp.int32(3))), seen
    (3, [None])
  """
  try:
    return np.asarray(x) if not isinstance(x, (int, float, bool)) else x
  except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
    return None
