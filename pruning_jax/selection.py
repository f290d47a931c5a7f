"""Which leaves may be pruned: static pytrees of Python bools with the params' structure.

A selection is plain data (``True``/``False`` leaves), so it is hashable-free, free to close
over in jitted code, and combines with ``jax.tree.map``. Paths are matched as slash-joined
strings (``"params/Conv_0/kernel"``); see :func:`pruning_jax.tree.path_str`.

Example:
  >>> import jax.numpy as jnp
  >>> params = {"conv": {"kernel": jnp.ones((3, 3, 1, 4)), "bias": jnp.zeros(4)},
  ...           "head": {"kernel": jnp.ones((4, 10))}}
  >>> select(params)
  {'conv': {'bias': False, 'kernel': True}, 'head': {'kernel': True}}
  >>> select(params, exclude=r"^head/")
  {'conv': {'bias': False, 'kernel': True}, 'head': {'kernel': False}}
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pruning_jax.tree import KeyPath, PyTree, is_array, keystr, leaves_with_paths, path_str

Pattern = str | re.Pattern | Sequence[str | re.Pattern]
Predicate = Callable[[str, Any], bool]
# what APIs accept as a selection: a bool tree, regex(es), ``params -> bool tree``, or None
SelectionLike = PyTree | str | Sequence[str] | Callable[[PyTree], PyTree] | None


_BIAS = re.compile(r"(^|[^a-z])bias$", re.IGNORECASE)


def is_weight_kernel(path: str, leaf: Any) -> bool:
  """The default rule: floating arrays with ndim > 1 whose name is not a bias.

  Conv and dense kernels are selected; biases and norm parameters are not, including the
  biases that have ndim > 1: Equinox ``Conv2d`` biases of shape ``(C, 1, 1)`` and attention
  biases of shape ``(heads, head_dim)`` (a leaf whose last path key ends in ``bias``).

  Args:
    path: the leaf's slash path.
    leaf: the leaf.

  Returns:
    Whether the leaf is a prunable weight kernel.

  Example:
    >>> import jax.numpy as jnp
    >>> w, b = jnp.ones((8, 3, 3, 3)), jnp.ones((8, 1, 1))
    >>> is_weight_kernel("conv/weight", w), is_weight_kernel("conv/bias", b)
    (True, False)
  """
  parts = path.split("/")
  while len(parts) > 1 and parts[-1] in ("value", "raw_value"):  # Flax NNX Variable fields
    parts.pop()
  name = parts[-1]
  return (
    is_array(leaf)
    and len(leaf.shape) > 1
    and jnp.issubdtype(leaf.dtype, jnp.floating)
    and not _BIAS.search(name)
  )


def _compile(patterns: Pattern | None, where: str) -> list[re.Pattern]:
  if patterns is None:
    return []
  if isinstance(patterns, (str, re.Pattern)):
    patterns = [patterns]
  patterns = list(patterns) if isinstance(patterns, (list, tuple)) else [patterns]
  out = []
  for p in patterns:
    if isinstance(p, str):
      try:
        out.append(re.compile(p))
      except re.error as e:
        raise ValueError(f"select: {where} pattern {p!r} is not a valid regex ({e}).") from e
    elif isinstance(p, re.Pattern):
      out.append(p)
    else:
      raise TypeError(
        f"select: {where} must be a regex string, a compiled re.Pattern or a list of them, got "
        f"{type(p).__name__} {p!r}. Fix: match on the slash path, e.g. {where}=r'conv' or "
        f"{where}=[r'^encoder/', r'kernel$']; use predicate= for a rule on the leaf itself."
      )
  return out


def select(
  params: PyTree,
  include: Pattern | None = None,
  *,
  exclude: Pattern | None = None,
  predicate: Predicate | None = None,
) -> PyTree:
  """A static bool pytree: True where a leaf may be pruned.

  A leaf is selected when it is an array, matches ``predicate`` (default
  :func:`is_weight_kernel` when ``include`` is None, otherwise any array), matches one of the
  ``include`` regexes (``re.search`` on the slash path) if given, and matches no ``exclude``
  regex.

  Args:
    params: the parameter pytree.
    include: regex or list of regexes; None means "every leaf the predicate accepts".
    exclude: regex or list of regexes removed from the selection.
    predicate: ``(path_str, leaf) -> bool``; defaults to :func:`is_weight_kernel` without
      ``include`` and to "floating array" with it.

  Returns:
    A pytree of Python bools with the structure of ``params``.

  Raises:
    TypeError: a pattern that is not a string or compiled regex.
    ValueError: a string pattern that is not a valid regex.

  Example:
    >>> import jax.numpy as jnp
    >>> select({"enc": {"kernel": jnp.ones((2, 2))}, "dec": {"kernel": jnp.ones((2, 2))}}, r"^enc/")
    {'dec': {'kernel': False}, 'enc': {'kernel': True}}
  """
  inc, exc = _compile(include, "include"), _compile(exclude, "exclude")
  if predicate is None:
    predicate = is_weight_kernel if not inc else _is_floating_array

  def choose(path: KeyPath, leaf: Any) -> bool:
    name = path_str(path)
    if not predicate(name, leaf):
      return False
    if inc and not any(p.search(name) for p in inc):
      return False
    return not any(p.search(name) for p in exc)

  return jax.tree_util.tree_map_with_path(choose, params)


def _is_floating_array(path: str, leaf: Any) -> bool:
  del path
  return is_array(leaf) and jnp.issubdtype(leaf.dtype, jnp.floating)


def selected_paths(selection: PyTree) -> list[KeyPath]:
  """Key paths of the selected leaves, in flatten order.

  Args:
    selection: a bool pytree.

  Returns:
    The key paths where the selection is True.

  Example:
    >>> [path_str(p) for p in selected_paths({"a": True, "b": False, "c": True})]
    ['a', 'c']
  """
  return [p for p, s in leaves_with_paths(selection) if s]


def _natural_key(name: str) -> list[Any]:
  # "Dense_10" sorts after "Dense_2": flatten order of dicts is lexicographic, layer order is not.
  return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def layer_order(selection: PyTree, order: Sequence[str] | None = None) -> list[str]:
  """Selected slash paths from first layer to last.

  Args:
    selection: a bool pytree.
    order: optional explicit order of slash paths (e.g. from
      :func:`pruning_jax.accounting.param_use_order`, the order in which the model's
      computation uses its params). Without it, paths are sorted naturally
      (``Dense_2`` before ``Dense_10``), which matches Flax's auto-naming.

  Returns:
    The selected slash paths in layer order.

  Raises:
    ValueError: ``order`` misses a selected path.

  Example:
    >>> layer_order({"Dense_10": {"kernel": True}, "Dense_2": {"kernel": True}})
    ['Dense_2/kernel', 'Dense_10/kernel']
  """
  names = [path_str(p) for p in selected_paths(selection)]
  if order is None:
    return sorted(names, key=_natural_key)
  rank = {name: i for i, name in enumerate(order)}
  missing = [n for n in names if n not in rank]
  if missing:
    raise ValueError(
      f"layer_order: selected leaves {missing} are not in the given order. Fix: pass an order "
      "that lists every selected path (param_use_order(apply_fn, params, x) does)."
    )
  return sorted(names, key=rank.__getitem__)


def _layer_count(n: Any, where: str) -> int:
  if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
    raise ValueError(
      f"{where}: n must be a number of layers >= 0, got {n!r}. Fix: pass e.g. n=1 (a negative "
      "n would count from the other end; use the other function for that)."
    )
  return int(n)


def exclude_first(selection: PyTree, n: int = 1, *, order: Sequence[str] | None = None) -> PyTree:
  """The selection without its first ``n`` layers (see :func:`layer_order`).

  Args:
    selection: a bool pytree.
    n: how many layers to drop, >= 0.
    order: explicit layer order, as in :func:`layer_order`.

  Returns:
    The narrower selection.

  Raises:
    ValueError: a negative or non-integer ``n``.

  Example:
    >>> exclude_first({"Dense_0": {"kernel": True}, "Dense_1": {"kernel": True}})
    {'Dense_0': {'kernel': False}, 'Dense_1': {'kernel': True}}
  """
  n = _layer_count(n, "exclude_first")
  return _drop(selection, layer_order(selection, order)[:n])


def exclude_last(selection: PyTree, n: int = 1, *, order: Sequence[str] | None = None) -> PyTree:
  """The selection without its last ``n`` layers (see :func:`layer_order`).

  Args:
    selection: a bool pytree.
    n: how many layers to drop, >= 0.
    order: explicit layer order, as in :func:`layer_order`.

  Returns:
    The narrower selection.

  Raises:
    ValueError: a negative or non-integer ``n``.

  Example:
    >>> exclude_last({"Dense_0": {"kernel": True}, "Dense_1": {"kernel": True}})
    {'Dense_0': {'kernel': True}, 'Dense_1': {'kernel': False}}
  """
  n = _layer_count(n, "exclude_last")
  names = layer_order(selection, order)
  return _drop(selection, names[len(names) - n :] if n else [])


def _drop(selection: PyTree, names: Sequence[str]) -> PyTree:
  drop = set(names)
  return jax.tree_util.tree_map_with_path(lambda p, s: bool(s) and path_str(p) not in drop, selection)


def validate(params: PyTree, selection: PyTree, *, what: str = "selection") -> list[KeyPath]:
  """Checks a selection against params; returns the selected paths.

  Args:
    params: the parameter pytree.
    selection: a bool pytree with the params' structure.
    what: how to call the selection in messages.

  Returns:
    The key paths of the selected leaves.

  Raises:
    ValueError: structure mismatch (naming the paths) or an empty selection.
    TypeError: a selected leaf that is not a floating array (e.g. integer params).

  Example:
    >>> import jax.numpy as jnp
    >>> [path_str(p) for p in validate({"w": jnp.ones((2, 2))}, {"w": True})]
    ['w']
  """
  from pruning_jax.tree import check_structure

  check_structure(params, selection, names=("params", what))
  paths = []
  for (path, leaf), (_, sel) in zip(leaves_with_paths(params), leaves_with_paths(selection), strict=True):
    if not sel:
      continue
    if not is_array(leaf):
      raise TypeError(
        f"{what} selects {keystr(path)}, which is a {type(leaf).__name__}, not an array. "
        "Fix: exclude it from the selection."
      )
    if not jnp.issubdtype(leaf.dtype, jnp.floating):
      raise TypeError(
        f"{what} selects {keystr(path)} with dtype {leaf.dtype}; only floating params can be "
        "pruned. Fix: exclude integer/bool leaves from the selection (select(..., exclude=...))."
      )
    paths.append(path)
  if not paths:
    raise ValueError(
      f"The {what} is empty: no leaf of params is selected for pruning. Fix: pass include= "
      "regexes that match your weight paths (slash-joined, e.g. 'Dense_0/kernel'), or a "
      "predicate; the default selects floating arrays with ndim > 1."
    )
  return paths


def _is_selection_fn(selection: Any) -> bool:
  # A function is a pytree leaf; a pytree of bools that happens to be callable (an Equinox
  # module, which is what ``select(model)`` returns for one) is a node with bool leaves.
  if not callable(selection):
    return False
  leaves = jax.tree_util.tree_leaves(selection)
  return len(leaves) == 1 and leaves[0] is selection


def resolve(selection: SelectionLike, params: PyTree, *, default_all_floats: bool = False) -> PyTree:
  """A validated static bool tree from any :data:`SelectionLike`.

  Args:
    selection: None for the default (:func:`is_weight_kernel`, or every floating leaf with
      ``default_all_floats``); a regex string or list of them (``include`` patterns); a
      function ``params -> bool tree``; or a bool tree.
    params: the parameter pytree.
    default_all_floats: what None means.

  Returns:
    A validated bool pytree with the params' structure.

  Raises:
    ValueError: a selection that does not fit the params, or selects nothing.
    TypeError: a selected non-floating leaf.

  Example:
    >>> import jax.numpy as jnp
    >>> resolve("gate", {"gate": jnp.ones(3), "w": jnp.ones((2, 2))})
    {'gate': True, 'w': False}
  """
  regexes = isinstance(selection, str) or (
    isinstance(selection, (list, tuple)) and bool(selection) and all(isinstance(s, str) for s in selection)
  )
  if selection is None:
    selection = select(params, include=".*" if default_all_floats else None)
  elif regexes:
    selection = select(params, include=selection)
  elif _is_selection_fn(selection):
    selection = selection(params)
  validate(params, selection)
  return selection


__all__ = [
  "Pattern",
  "Predicate",
  "SelectionLike",
  "exclude_first",
  "exclude_last",
  "is_weight_kernel",
  "layer_order",
  "resolve",
  "select",
  "selected_paths",
  "validate",
]
