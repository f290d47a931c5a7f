"""Parameter, non-zero and FLOP accounting.

FLOPs are counted from the model's own computation: :func:`count_flops` traces
``apply_fn(params, *inputs)`` to a jaxpr and evaluates it once, equation by equation, counting
every ``conv_general_dilated`` and ``dot_general``. The evaluation is concrete, so the weight
operand's actual non-zeros are known however the mask was applied (pre-masked params, a
Pruner's ``apply``, a structured shrink), and each weight is traced back to its param leaf.

Conventions: a MAC is one multiply-accumulate; FLOPs = 2 x MACs. Dense MACs of a conv are
``prod(output shape) * prod(kernel spatial) * kernel input features`` (so grouped and depthwise
convs are right); of a ``dot_general`` ``prod(output shape) * prod(contracted dims)``. Effective
MACs skip zero weights: ``nnz(kernel) * N * prod(output spatial)`` for a conv and
``nnz(weight) * prod(free dims of the other operand)`` for a dot (the ShrinkBench convention,
border effects of padding ignored). Bias adds, activations, norms and pooling are not counted,
nor is a convolution with a param-free one-hot kernel (``lax.conv_general_dilated_patches``,
which copies pixels into patches), so a layer computed as patches times a kernel matrix counts
the same MACs as the convolution it equals.
Pass a batch of 1 for per-example figures.

Example:
  >>> import jax, jax.numpy as jnp
  >>> def mlp(p, x): return jax.nn.relu(x @ p["w1"]) @ p["w2"]
  >>> p = {"w1": jnp.ones((4, 8)).at[0].set(0.), "w2": jnp.ones((8, 2))}
  >>> r = count_flops(mlp, p, jax.ShapeDtypeStruct((1, 4), jnp.float32))
  >>> r.macs, r.effective_macs, [l.path for l in r.layers]
  (48, 40, ['w1', 'w2'])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore

from pruning_jax.masks import apply_masks
from pruning_jax.tree import PyTree, is_array, keystr, leaves_with_paths, path_str

__all__ = [
  "FlopReport",
  "abs_above_fractions",
  "LayerFlops",
  "ParamCounts",
  "WeightMacs",
  "count_flops",
  "count_params",
  "effective_macs",
  "macs_per_weight",
  "param_table",
  "param_use_order",
]

_COUNTED = ("conv_general_dilated", "dot_general")
# Primitives that call a sub-jaxpr once with their own operands: evaluated equation by equation.
_CALLS = frozenset(
  {
    "pjit",
    "jit",
    "closed_call",
    "core_call",
    "custom_jvp_call",
    "custom_vjp_call",
    "custom_vjp_call_jaxpr",
    "checkpoint",
    "remat",
    "remat2",
  }
)


class LayerFlops(NamedTuple):
  """One counted conv or dense product.

  Attributes:
    path: slash path of the weight leaf (``"a+b"`` if several; None when no param is involved).
    primitive: ``"conv_general_dilated"`` or ``"dot_general"``.
    macs: dense multiply-accumulates.
    effective_macs: multiply-accumulates with zero weights skipped.
  """

  path: str | None  # slash path of the weight's param leaf ("a+b" if several; None: not a param)
  primitive: str  # "conv_general_dilated" or "dot_general"
  macs: int  # dense multiply-accumulates
  effective_macs: int  # with zero weights skipped


class FlopReport(NamedTuple):
  """What :func:`count_flops` measured.

  Attributes:
    layers: one :class:`LayerFlops` per counted product, in execution order.
    macs: dense MACs of the whole computation.
    effective_macs: MACs with zero weights skipped.
    uncounted: control-flow primitives (e.g. ``while``) whose bodies were not inspected.
  """

  layers: list[LayerFlops]
  macs: int
  effective_macs: int
  uncounted: list[str]  # control-flow primitives whose bodies were not inspected

  @property
  def flops(self) -> int:
    return 2 * self.macs

  @property
  def effective_flops(self) -> int:
    return 2 * self.effective_macs

  @property
  def speedup(self) -> float:
    """ShrinkBench's theoretical speedup: dense / effective MACs."""
    return self.macs / self.effective_macs if self.effective_macs else math.inf


class _Val(NamedTuple):
  value: Any
  origin: frozenset  # param leaf indices this value is computed from
  from_input: bool  # depends on the model inputs (an activation, not a weight)


def _sub_jaxpr(eqn) -> jcore.ClosedJaxpr | None:
  """The callee of call-like primitives (jit, custom_jvp/vjp, checkpoint, closed_call)."""
  if eqn.primitive.name not in _CALLS:
    return None
  for v in eqn.params.values():
    j = v if isinstance(v, jcore.ClosedJaxpr) else None
    if isinstance(v, jcore.Jaxpr):
      j = jcore.ClosedJaxpr(v, ())
    if j is not None and len(j.jaxpr.invars) == len(eqn.invars):
      return j
  return None


def _has_jaxpr(eqn) -> bool:
  def is_j(v):
    if isinstance(v, (jcore.ClosedJaxpr, jcore.Jaxpr)):
      return True
    return isinstance(v, (tuple, list)) and any(is_j(x) for x in v)

  return any(is_j(v) for v in eqn.params.values())


def _macs(eqn, ins: list[_Val], out: Any) -> tuple[int, int, _Val | None]:
  """(dense MACs, effective MACs, the weight operand) of a counted equation."""
  lhs, rhs = ins
  out_size = int(np.prod(out.shape, dtype=np.int64))
  if eqn.primitive.name == "conv_general_dilated":
    dn = eqn.params["dimension_numbers"]
    k_shape = rhs.value.shape
    per_out = int(np.prod([k_shape[i] for i in dn.rhs_spec[2:]], dtype=np.int64)) * k_shape[dn.rhs_spec[1]]
    dense = out_size * per_out
    if rhs.from_input:
      return dense, dense, None
    positions = out_size // out.shape[dn.out_spec[1]]
    return dense, int(jnp.count_nonzero(rhs.value)) * positions, rhs
  (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
  dense = out_size * int(np.prod([lhs.value.shape[i] for i in lc], dtype=np.int64))
  for w, other, (oc, ob) in ((rhs, lhs, (lc, lb)), (lhs, rhs, (rc, rb))):
    if not w.from_input:
      free = [d for i, d in enumerate(other.value.shape) if i not in oc and i not in ob]
      return dense, int(jnp.count_nonzero(w.value)) * int(np.prod(free, dtype=np.int64)), w
  return dense, dense, None


def _is_patch_gather(eqn, ins: list[_Val]) -> bool:
  """A conv whose kernel is a param-free one-hot (``lax.conv_general_dilated_patches``) copies
  pixels into patches: data movement, not multiply-accumulates of the model."""
  if eqn.primitive.name != "conv_general_dilated":
    return False
  k = ins[1]
  if k.from_input or k.origin:
    return False
  v = np.asarray(k.value)
  out_axis = eqn.params["dimension_numbers"].rhs_spec[0]
  ones_per_output = np.moveaxis(v, out_axis, 0).reshape(v.shape[out_axis], -1).sum(axis=1)
  return bool(np.isin(v, (0, 1)).all() and (ones_per_output == 1).all())


def _eval(jaxpr: jcore.Jaxpr, consts, args: list[_Val], names: list[str], acc: dict) -> list[_Val]:
  env: dict = {}

  def read(v):
    if isinstance(v, jcore.Literal):
      return _Val(v.val, frozenset(), False)
    return env[v]

  for v, c in zip(jaxpr.constvars, consts, strict=True):
    env[v] = _Val(c, frozenset(), False)
  for v, a in zip(jaxpr.invars, args, strict=True):
    env[v] = a
  for eqn in jaxpr.eqns:
    ins = [read(v) for v in eqn.invars]
    origin = frozenset().union(*(i.origin for i in ins))
    from_input = any(i.from_input for i in ins)
    sub = _sub_jaxpr(eqn)
    if sub is not None:
      outs = _eval(sub.jaxpr, sub.consts, ins, names, acc)
    else:
      if _has_jaxpr(eqn):
        acc["uncounted"].append(eqn.primitive.name)
      res = eqn.primitive.bind(*[i.value for i in ins], **eqn.params)
      res = res if eqn.primitive.multiple_results else [res]
      outs = [_Val(r, origin, from_input) for r in res]
      if eqn.primitive.name in _COUNTED and not _is_patch_gather(eqn, ins):
        dense, eff, w = _macs(eqn, ins, res[0])
        path = "+".join(names[i] for i in sorted(w.origin)) if w is not None and w.origin else None
        acc["layers"].append(LayerFlops(path, eqn.primitive.name, dense, eff))
    for v, o in zip(eqn.outvars, outs, strict=True):
      env[v] = o
  return [read(v) for v in jaxpr.outvars]


def _require_concrete(tree: PyTree, name: str, fn: str) -> None:
  """Counting reads values (which weights are zero) on the host, so it cannot run on tracers."""
  for path, leaf in leaves_with_paths(tree):
    if isinstance(leaf, jax.core.Tracer):
      raise ValueError(
        f"{fn}: {name} at {keystr(path)} is traced (called under jit, grad or vmap), but counting "
        "reads which weights are zero, on the host. Fix: call it outside the jitted function, on "
        "the params and masks it returns."
      )


def _concrete(x):
  return jnp.zeros(x.shape, x.dtype) if isinstance(x, jax.ShapeDtypeStruct) else jnp.asarray(x)


def count_flops(
  apply_fn: Callable[..., Any], params: PyTree, *inputs: Any, masks: PyTree | None = None
) -> FlopReport:
  """Dense and effective (zero weights skipped) MACs of every conv and dense layer.

  Args:
    apply_fn: ``(params, *inputs) -> outputs``, e.g.
      ``lambda p, x: model.apply({"params": p}, x)``.
    params: concrete parameters.
    *inputs: example inputs, arrays or ``jax.ShapeDtypeStruct`` (the batch size counts).
    masks: optional masks, applied to ``params`` first.

  Returns:
    A :class:`FlopReport`; ``layers`` are in execution order.

  Raises:
    ValueError: traced params or masks (count outside jit).

  Example:
    >>> import jax.numpy as jnp
    >>> params = {"w": jnp.array([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]])}
    >>> r = count_flops(lambda p, x: x @ p["w"], params, jnp.ones((4, 2)))
    >>> r.macs, r.effective_macs  # batch 4 x 2 x 3, and 4 x 3 non-zero weights
    (24, 12)
  """
  _require_concrete(params, "params", "count_flops")
  if masks is not None:
    _require_concrete(masks, "masks", "count_flops")
    params = apply_masks(params, masks)
  inputs = tuple(jax.tree.map(_concrete, x) for x in inputs)
  p_leaves, p_def = jax.tree_util.tree_flatten(params)
  names = [path_str(p) for p, _ in leaves_with_paths(params)]
  arrays = [i for i, leaf in enumerate(p_leaves) if is_array(leaf)]

  def flat_fn(param_arrays, *xs):
    leaves = list(p_leaves)
    for i, a in zip(arrays, param_arrays, strict=True):
      leaves[i] = a
    return apply_fn(jax.tree_util.tree_unflatten(p_def, leaves), *xs)

  param_arrays = [jnp.asarray(p_leaves[i]) for i in arrays]
  closed = jax.make_jaxpr(flat_fn)(param_arrays, *inputs)
  args = [_Val(a, frozenset([i]), False) for i, a in zip(arrays, param_arrays, strict=True)]
  args += [_Val(x, frozenset(), True) for x in jax.tree.leaves(inputs)]
  acc: dict = {"layers": [], "uncounted": []}
  _eval(closed.jaxpr, closed.consts, args, names, acc)
  layers = acc["layers"]
  return FlopReport(
    layers,
    sum(layer.macs for layer in layers),
    sum(layer.effective_macs for layer in layers),
    sorted(set(acc["uncounted"])),
  )


class WeightMacs(NamedTuple):
  """Each weight's share of the forward MACs, for counting masks inside jit (:func:`effective_macs`).

  Attributes:
    per_weight: per param leaf, the MACs one non-zero entry of it costs (a float: the output
      positions it is multiplied at, summed over its products); 0.0 for leaves in no product.
    fixed: MACs of products not attributable to one leaf (two params multiplied together, or
      an input-only product): counted dense.
    dense: the dense MACs, ``fixed`` plus every weight at full density.
    sizes: per param leaf, its number of entries (what a 0-d all-kept mask stands for).
  """

  per_weight: PyTree
  fixed: int
  dense: int
  sizes: PyTree


def macs_per_weight(apply_fn: Callable[..., Any], params: PyTree, *inputs: Any) -> WeightMacs:
  """The MACs one non-zero weight of each leaf costs, from :func:`count_flops`'s products.

  A conv or dense product's effective MACs are linear in its kernel's non-zero count (each weight
  is used at every output position), so ``effective_macs(masks, macs_per_weight(...))`` equals
  ``count_flops(..., masks=masks).effective_macs`` exactly, and is cheap and jittable: training
  loops can log the MACs of the masks they train with at every step (RigL's training-FLOPs
  accounting).

  Args:
    apply_fn: ``(params, *inputs) -> outputs``.
    params: concrete parameters (their values are not used; zeros are counted as dense).
    *inputs: example inputs (the batch size counts).

  Returns:
    A :class:`WeightMacs`.

  Example:
    >>> import jax.numpy as jnp
    >>> params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
    >>> wm = macs_per_weight(lambda p, x: x @ p["w"] + p["b"], params, jnp.ones((4, 2)))
    >>> wm.per_weight, wm.dense, wm.sizes
    ({'b': 0.0, 'w': 4.0}, 24, {'b': 3, 'w': 6})
  """
  dense_params = jax.tree.map(
    lambda a: jnp.ones(jnp.shape(a), jnp.result_type(a)) if is_array(a) else a, params
  )
  report = count_flops(apply_fn, dense_params, *inputs)
  per_path: dict[str, int] = {}
  fixed = 0
  for layer in report.layers:
    if layer.path is None or "+" in layer.path:
      fixed += layer.macs
    else:
      per_path[layer.path] = per_path.get(layer.path, 0) + layer.effective_macs
  sizes = {path_str(p): int(np.size(a)) for p, a in leaves_with_paths(params)}
  per_weight = jax.tree_util.tree_map_with_path(
    lambda p, a: per_path.get(path_str(p), 0) / max(sizes[path_str(p)], 1), params
  )
  return WeightMacs(per_weight, fixed, report.macs, jax.tree.map(lambda a: int(np.size(a)), params))


def effective_macs(masks: PyTree, weight_macs: WeightMacs) -> jax.Array:
  """Forward MACs with the masked-out weights skipped: ``fixed + sum_leaf per_weight * nnz(mask)``.

  Args:
    masks: bool masks with the params' structure (0-d True: the whole leaf kept), concrete or
      traced.
    weight_macs: :func:`macs_per_weight` of the same network and inputs.

  Returns:
    (), float32: the effective MACs (exact up to float32 rounding of large counts).

  Example:
    >>> import jax.numpy as jnp
    >>> params = {"w": jnp.ones((2, 3))}
    >>> wm = macs_per_weight(lambda p, x: x @ p["w"], params, jnp.ones((4, 2)))
    >>> float(effective_macs({"w": jnp.array([[True, False, True], [False, False, True]])}, wm))
    12.0
  """
  total = jnp.float32(weight_macs.fixed)
  wm = weight_macs
  for f, n, m in zip(
    jax.tree.leaves(wm.per_weight), jax.tree.leaves(wm.sizes), jax.tree.leaves(masks), strict=True
  ):
    if f:
      kept = jnp.sum(m, dtype=jnp.float32) if jnp.ndim(m) else n * jnp.asarray(m, jnp.float32)
      total = total + f * kept
  return total


def param_use_order(apply_fn: Callable[..., Any], params: PyTree, *inputs: Any) -> list[str]:
  """Slash paths of the weight leaves in the order the computation uses them.

  For :func:`pruning_jax.selection.exclude_first` / ``exclude_last`` where names do not sort
  in layer order.

  Args:
    apply_fn: ``(params, *inputs) -> outputs``.
    params: concrete parameters.
    *inputs: example inputs.

  Returns:
    Slash paths, first conv/dense layer first.

  Raises:
    ValueError: traced params.

  Example:
    >>> import jax.numpy as jnp
    >>> params = {"z_first": jnp.ones((2, 3)), "a_last": jnp.ones((3, 1))}
    >>> param_use_order(lambda p, x: x @ p["z_first"] @ p["a_last"], params, jnp.ones((1, 2)))
    ['z_first', 'a_last']
  """
  order: list[str] = []
  for layer in count_flops(apply_fn, params, *inputs).layers:
    for name in (layer.path or "").split("+"):
      if name and name not in order:
        order.append(name)
  return order


class ParamCounts(NamedTuple):
  """Parameter counts of :func:`count_params`.

  Attributes:
    total: every array entry.
    nonzero: entries that are not zero.
  """

  total: int
  nonzero: int

  @property
  def compression_ratio(self) -> float:
    """ShrinkBench's compression ratio: all params / non-zero params."""
    return self.total / self.nonzero if self.nonzero else math.inf


def count_params(params: PyTree, masks: PyTree | None = None) -> ParamCounts:
  """Total and non-zero parameter counts over every array leaf (after ``masks`` if given).

  Args:
    params: concrete parameters.
    masks: optional masks, applied first.

  Returns:
    A :class:`ParamCounts`.

  Raises:
    ValueError: traced params or masks (count outside jit).

  Example:
    >>> import jax.numpy as jnp
    >>> count_params({"w": jnp.array([[1.0, 0.0], [2.0, 3.0]]), "b": jnp.zeros(2)})
    ParamCounts(total=6, nonzero=3)
  """
  _require_concrete(params, "params", "count_params")
  if masks is not None:
    _require_concrete(masks, "masks", "count_params")
    params = apply_masks(params, masks)
  arrays = [x for x in jax.tree.leaves(params) if is_array(x)]
  total = sum(int(np.prod(x.shape, dtype=np.int64)) for x in arrays)
  nonzero = sum(int(jnp.count_nonzero(x)) for x in arrays)
  return ParamCounts(total, nonzero)


def param_table(params: PyTree, masks: PyTree | None = None) -> list[tuple[str, tuple[int, ...], int, int]]:
  """Per-leaf ``(slash path, shape, total, nonzero)`` for every array leaf.

  Args:
    params: concrete parameters.
    masks: optional masks, applied first.

  Returns:
    A list of ``(path, shape, total, nonzero)``.

  Raises:
    ValueError: traced params or masks (count outside jit).

  Example:
    >>> import jax.numpy as jnp
    >>> param_table({"w": jnp.array([[1.0, 0.0], [2.0, 3.0]])})
    [('w', (2, 2), 4, 3)]
  """
  _require_concrete(params, "params", "param_table")
  if masks is not None:
    _require_concrete(masks, "masks", "param_table")
    params = apply_masks(params, masks)
  return [
    (path_str(p), tuple(x.shape), int(np.prod(x.shape, dtype=np.int64)), int(jnp.count_nonzero(x)))
    for p, x in leaves_with_paths(params)
    if is_array(x)
  ]


def abs_above_fractions(tree: PyTree, thresholds: tuple[float, ...] | list[float]) -> dict[str, jax.Array]:
  """Per array leaf of ``ndim > 0``, the fraction of entries with ``|v| > t`` for each threshold.

  How far learned mask variables (ASLP's logits, supermask's, edge-popup's scores) have moved
  from their start: a logit ``m`` decides its weight under Gumbel noise only once ``|m|`` is a
  few units, so the fraction still below 1 or 2 is the part of the sampled network the
  deterministic extraction (``m >= 0``) reads as noise. Jittable.

  Args:
    tree: a pytree of float arrays (0-d leaves, the placeholders of unselected leaves, are
      skipped).
    thresholds: the ``t``, each ``>= 0``.

  Returns:
    ``{slash path: (len(thresholds),) float32}``.

  Raises:
    ValueError: an empty or negative threshold list.

  Example:
    >>> import jax.numpy as jnp
    >>> out = abs_above_fractions({"m": jnp.array([-3.0, -0.5, 0.2, 2.0]), "b": jnp.zeros(())}, [0.1, 1.0])
    >>> {k: v.tolist() for k, v in out.items()}
    {'m': [1.0, 0.5]}
  """
  ts = [float(t) for t in thresholds]
  if not ts or any(not t >= 0 for t in ts):
    raise ValueError(
      f"abs_above_fractions: thresholds must be a non-empty list of numbers >= 0, got {thresholds!r}."
    )
  t = jnp.asarray(ts, jnp.float32)
  return {
    path_str(path): jnp.mean(jnp.abs(v.astype(jnp.float32)).reshape(-1, 1) > t, axis=0)
    for path, v in leaves_with_paths(tree)
    if is_array(v) and v.ndim > 0
  }
