"""Pruning state that shards like the params, and what a compiled program moves between devices.

Every leaf of a pruning method's state that belongs to a param (a mask, a score, a logit, an
optimizer moment of a weight or of a mask variable) has that param's shape and ends with that
param's path: ``params/Dense_0/kernel``, ``pruner_state/learned/logits/Dense_0/kernel``,
``opt_state/0/mu/params/Dense_0/kernel``. :func:`shardings_like` gives each such leaf the
param's own :class:`jax.sharding.NamedSharding` and every other leaf (counters, per-layer
scalars, the 0-d placeholders of unselected leaves) a replicated one, so no pruner state needs
a hand-written partition spec: users shard their params however they like (FSDP, tensor
parallel, both; :func:`fsdp` is one rule) and everything else follows.

:func:`collectives` reads a compiled program's HLO for the collectives it runs, to check that
an exact global threshold on sharded scores moves counts, not scores.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from pruning_jax.tree import PyTree, path_str

__all__ = ["Collective", "collectives", "fsdp", "replicated", "shard", "shardings_like"]


def replicated(mesh: Mesh) -> NamedSharding:
  """The sharding that puts a full copy on every device of ``mesh``.

  Args:
    mesh: the device mesh.

  Returns:
    ``NamedSharding(mesh, PartitionSpec())``.

  Example:
    >>> import jax, numpy as np
    >>> mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
    >>> replicated(mesh).spec
    P()
  """
  return NamedSharding(mesh, PartitionSpec())


def fsdp(
  params: PyTree,
  mesh: Mesh,
  *,
  axis: str = "data",
  tensor_axis: str | None = None,
  min_elements: int = 1024,
) -> PyTree:
  """Fully sharded data-parallel shardings of ``params`` (optionally times tensor parallelism).

  Each array of at least ``min_elements`` entries is split over ``axis`` along its largest
  dimension divisible by that axis' size; with ``tensor_axis``, a kernel's last (output)
  dimension is split over it first when divisible (Megatron-style column parallelism), and
  the FSDP split then takes the largest remaining divisible dimension. Smaller arrays and
  those with no divisible dimension are replicated.

  Args:
    params: the params pytree (arrays or shape-dtype structs).
    mesh: the device mesh; it must have ``axis`` (and ``tensor_axis``).
    axis: the mesh axis parameters are fully sharded over.
    tensor_axis: an optional second mesh axis for the output dimension.
    min_elements: arrays smaller than this are replicated.

  Returns:
    A pytree of ``NamedSharding`` with the params' structure.

  Raises:
    ValueError: an axis the mesh does not have.

  Example:
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
    >>> fsdp({"w": jnp.zeros((2048, 4)), "b": jnp.zeros(4)}, mesh)["w"].spec
    P('data',)
  """
  for name in (axis, tensor_axis):
    if name is not None and name not in mesh.shape:
      raise ValueError(f"fsdp: the mesh has axes {tuple(mesh.shape)}, not {name!r}.")

  def rule(p):
    shape = tuple(getattr(p, "shape", ()))
    spec: list[Any] = [None] * len(shape)
    if math.prod(shape) < min_elements or not shape:
      return NamedSharding(mesh, PartitionSpec())
    if tensor_axis is not None and len(shape) >= 2 and shape[-1] % mesh.shape[tensor_axis] == 0:
      spec[-1] = tensor_axis
    free = [d for d in range(len(shape)) if spec[d] is None and shape[d] % mesh.shape[axis] == 0]
    if free:
      spec[max(free, key=lambda d: shape[d])] = axis
    while spec and spec[-1] is None:  # P('data', None) is P('data'): one spelling per sharding
      spec.pop()
    return NamedSharding(mesh, PartitionSpec(*spec))

  return jax.tree.map(rule, params)


def _paths(tree: PyTree) -> list[tuple[tuple[str, ...], Any]]:
  return [
    (tuple(path_str(path).split("/")), leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
  ]


def shardings_like(tree: PyTree, params: PyTree, param_shardings: PyTree) -> PyTree:
  """A sharding for every leaf of ``tree`` (a train state, a pruner state, masks, an optimizer
  state), derived from the params' own.

  A leaf gets the sharding of the param whose path is the longest suffix of its own path and
  whose shape it has (its mask, score, logit, moment); every other leaf is replicated.

  Args:
    tree: the pytree to shard (arrays or ``jax.eval_shape`` structs).
    params: the params (arrays or structs), for their paths and shapes.
    param_shardings: a ``NamedSharding`` per param, with the params' structure.

  Returns:
    A pytree of ``NamedSharding`` with ``tree``'s structure.

  Raises:
    ValueError: ``param_shardings`` on more than one mesh, or not like ``params``.

  Example:
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    >>> mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
    >>> params = {"Dense_0": {"kernel": jnp.zeros((8, 4))}}
    >>> sh = {"Dense_0": {"kernel": NamedSharding(mesh, P("data", None))}}
    >>> state = {"masks": {"Dense_0": {"kernel": jnp.ones((8, 4), bool)}}, "step": jnp.int32(0)}
    >>> out = shardings_like(state, params, sh)
    >>> out["masks"]["Dense_0"]["kernel"].spec, out["step"].spec
    (P('data', None), P())
  """
  shard_leaves = jax.tree.leaves(param_shardings, is_leaf=lambda x: isinstance(x, NamedSharding))
  if len(shard_leaves) != len(jax.tree.leaves(params)):
    raise ValueError(
      f"shardings_like: param_shardings has {len(shard_leaves)} shardings for {len(jax.tree.leaves(params))} "
      "params; give one NamedSharding per param leaf (e.g. pruning_jax.sharding.fsdp(params, mesh))."
    )
  meshes = {s.mesh for s in shard_leaves}
  if len(meshes) != 1:
    raise ValueError(f"shardings_like: the param shardings span {len(meshes)} meshes; use one mesh.")
  rep = replicated(meshes.pop())
  by_path = {
    path: (tuple(getattr(p, "shape", ())), s)
    for (path, p), s in zip(_paths(params), shard_leaves, strict=True)
  }
  longest = max((len(p) for p in by_path), default=0)

  def pick(path: tuple[str, ...], leaf) -> NamedSharding:
    shape = tuple(getattr(leaf, "shape", ()))
    for n in range(min(longest, len(path)), 0, -1):
      hit = by_path.get(path[-n:])
      if hit is not None and hit[0] == shape:
        return hit[1]
    return rep

  leaves = [pick(path, leaf) for path, leaf in _paths(tree)]
  return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(tree), leaves)


def shard(tree: PyTree, shardings: PyTree) -> PyTree:
  """``jax.device_put`` of every leaf onto its sharding.

  Args:
    tree: arrays.
    shardings: a sharding per leaf (e.g. from :func:`shardings_like`).

  Returns:
    The placed tree.

  Example:
    >>> import jax, jax.numpy as jnp, numpy as np
    >>> mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
    >>> shard({"a": jnp.zeros(2)}, {"a": replicated(mesh)})["a"].sharding.spec
    P()
  """
  return jax.tree.map(jax.device_put, tree, shardings)


class Collective(NamedTuple):
  """One collective of a compiled program.

  Attributes:
    op: ``"all-gather"``, ``"all-reduce"``, ``"all-to-all"``, ``"collective-permute"`` or
      ``"reduce-scatter"``.
    elements: how many elements it produces (summed over a tuple result).
    shape: its result type as the HLO prints it.
  """

  op: str
  elements: int
  shape: str


_COLLECTIVE = re.compile(
  r"=\s*(\(.*?\)|[a-z0-9]+\[[0-9,]*\](?:\{[^}]*\})?)\s+"
  r"(all-gather|all-reduce|all-to-all|collective-permute|reduce-scatter)(?:-start)?\("
)


def collectives(compiled: Any, ops: Sequence[str] | None = None) -> list[Collective]:
  """The collectives in a compiled program's HLO (``jax.jit(f).lower(...).compile()`` or its
  text), with the number of elements each produces (summed over a tuple result).

  Args:
    compiled: a compiled program, or HLO text.
    ops: keep only these ops (e.g. ``("all-gather",)``); default all.

  Returns:
    A list of :class:`Collective`.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> collectives(jax.jit(lambda x: x + 1).lower(jnp.zeros(3)).compile())
    []
  """
  text = compiled if isinstance(compiled, str) else compiled.as_text()
  out = []
  for m in _COLLECTIVE.finditer(text):
    shape, op = m.group(1), m.group(2)
    if ops is not None and op not in ops:
      continue
    dims = re.findall(r"\[([0-9,]*)\]", shape)
    n = sum(math.prod(int(d) for d in ds.split(",") if d) for ds in dims)
    out.append(Collective(op, n, shape))
  return out
