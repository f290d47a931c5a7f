"""Channel dependency groups read off the jaxpr: which array axes must shrink together.

Removing output channel c of a conv also removes input channel c of the next conv, entry c of
its bias and of the BatchNorm after it (scale, bias, running mean and variance), and, through a
flatten, every row of the next dense kernel that channel c becomes. A residual add ties the
channels on both of its sides. :func:`channel_groups` finds these couplings by abstract
interpretation of the jaxpr of ``fn(tree, *inputs)``: every axis of every value carries the
channel space it indexes, if any, and each primitive states how the spaces of its operands and
results relate (a dot or conv contracts one space with another, an element-wise op or a bias
add unifies them, a flatten folds one into a larger axis). The spaces that end up joined form a
group; a group that reaches a network input or output can never shrink.

Supported primitives cover conv/dense networks with biases, BatchNorm, activations, pooling,
global average pooling, flatten and residual adds, transformer MLP blocks, including the calls Flax and custom
gradients wrap them in, depthwise convolutions with a channel multiplier (which is also how
``lax.conv_general_dilated_patches`` works), and kernels reshaped into one contraction axis
(their window positions are told apart from their channels by stride). Any other primitive
that touches a channel axis is an error naming it: a group must never be silently wrong. Where
removing a channel would change what the others compute, its channels are fixed instead: a
reduction over them (LayerNorm statistics, a softmax), a contraction of two activations over
them (attention's q . k, scaled by its width), a reshape that splits them (into heads), and a
concatenation, pad or slice along them (whose offsets into a group are not followed, so
DenseNet-style concatenated features keep their widths), and reads at computed indices (an
embedding lookup's table and result). Attention heads kept as a separate
axis (Flax's ``MultiHeadDotProductAttention``) form one group whose channels are the heads.

Example:
  >>> import jax, jax.numpy as jnp
  >>> params = {"a": jnp.ones((4, 8)), "b": jnp.ones(8), "c": jnp.ones((8, 3))}
  >>> fn = lambda p, x: jax.nn.relu(x @ p["a"] + p["b"]) @ p["c"]
  >>> [g.describe() for g in channel_groups(fn, params, jnp.ones((2, 4))) if g.prunable]
  ['8 channels: a axis 1, b axis 0, c axis 0']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore

from pruning_jax import validation
from pruning_jax.accounting import _sub_jaxpr  # the call-like primitives FLOP counting follows too
from pruning_jax.tree import PyTree, is_array, leaves_with_paths, path_str, static_value

__all__ = [
  "ChannelGroup",
  "Member",
  "channel_groups",
  "channel_index",
  "channel_masks",
  "describe_groups",
  "keep_from_masks",
  "scale_channels",
  "shrink",
  "shrink_module",
]


class Member(NamedTuple):
  """One array axis of a group.

  Attributes:
    path: slash path of the leaf.
    axis: the axis.
    inner: channel c occupies the indices ``i`` with ``(i // inner) % channels == c`` (1 for a
      plain channel axis; a flatten into a dense kernel gives ``inner > 1`` or repeats).
    role: ``"out"`` where a conv or dense weight produces the channels (its filters), ``"in"``
      where one consumes them, ``"elementwise"`` for the rest (biases, norm scales, statistics).
  """

  path: str
  axis: int
  inner: int
  role: str = "elementwise"


class ChannelGroup(NamedTuple):
  """Array axes that index the same channels and must shrink together.

  Attributes:
    channels: the number of channels.
    members: the (leaf, axis) pairs, in flatten order of the tree.
    prunable: False when the channels reach a network input or output (e.g. image channels,
      class logits), which cannot shrink.
  """

  channels: int
  members: tuple[Member, ...]
  prunable: bool

  def describe(self, shapes: Mapping[str, tuple[int, ...]] | None = None) -> str:
    """The group on one line, e.g. ``'8 channels: a axis 1, b axis 0'``.

    Args:
      shapes: ``{slash path: shape}`` to print beside each member (optional).

    Returns:
      The line; ``(fixed)`` marks a group that cannot shrink (it reaches an input or output,
      or something that reads all its channels at once).
    """
    parts = [
      f"{m.path}{list(shapes[m.path]) if shapes and m.path in shapes else ''} axis {m.axis}"
      + (f" (inner {m.inner})" if m.inner != 1 else "")
      for m in self.members
    ]
    fixed = "" if self.prunable else " (fixed)"
    return f"{self.channels} channels{fixed}: " + ", ".join(parts)


class _Dim(NamedTuple):
  space: int
  inner: int  # channel c is at indices (i // inner) % channels; 1 for a plain channel axis
  length: int  # the axis' length: the channel count, or a multiple after a flatten
  # further (space, inner) parts of an axis that merges several (a kernel's (C, kh, kw) reshaped
  # into one contraction axis): matched by stride against the axis it is joined with
  extra: tuple[tuple[int, int], ...] = ()

  @property
  def parts(self) -> tuple[tuple[int, int], ...]:
    return ((self.space, self.inner), *self.extra)


class _Spaces:
  """Union-find over channel spaces, each with its channel count."""

  def __init__(self):
    self.parent: list[int] = []
    self.size: list[int] = []
    self.fixed: list[bool] = []
    # a plain space found to be a flattened view of another: root -> (space, inner)
    self.alias: dict[int, tuple[int, int]] = {}

  def new(self, size: int) -> int:
    self.parent.append(len(self.parent))
    self.size.append(size)
    self.fixed.append(False)
    return len(self.parent) - 1

  def find(self, i: int) -> int:
    while self.parent[i] != i:
      self.parent[i] = self.parent[self.parent[i]]
      i = self.parent[i]
    return i

  def union(self, a: int, b: int, where: str) -> None:
    a, b = self.find(a), self.find(b)
    if a == b:
      return
    if self.size[a] != self.size[b]:
      raise ValueError(f"channel_groups: {where} joins {self.size[a]} channels with {self.size[b]}.")
    self.parent[b] = a
    self.fixed[a] = self.fixed[a] or self.fixed[b]


Dims = list  # per axis: a _Dim or None (batch, spatial, or an axis that is no channel)


def _plain_dims(spaces: _Spaces, shape: Sequence[int]) -> Dims:
  return [_Dim(spaces.new(int(n)), 1, int(n)) if n > 1 else None for n in shape]


class _Tracer:
  def __init__(self, spaces: _Spaces):
    self.spaces = spaces
    self.spatial: list[int] = []  # spaces of kernel window axes: never channels
    self.roles: dict[int, str] = {}  # space of a weight's axis -> "out" or "in", at its first use

  def mark(self, dims: Dims, axes, role: str) -> None:
    for a in axes:
      if dims[a] is not None:
        for space, _ in dims[a].parts:
          self.roles.setdefault(space, role)

  def join(self, a: _Dim | None, b: _Dim | None, where: str) -> _Dim | None:
    if a is None or b is None:  # e.g. a constant of the full shape: it adds no channel
      return a if a is not None else b
    if a.length != b.length:
      raise ValueError(f"channel_groups: {where} joins axes of length {a.length} and {b.length}.")
    sp = self.spaces
    if a.extra or b.extra:
      return self._join_parts(a, b, where)
    plain_a = a.inner == 1 and sp.size[sp.find(a.space)] == a.length
    plain_b = b.inner == 1 and sp.size[sp.find(b.space)] == b.length
    if plain_a != plain_b:  # one side is a flattened view of channels: the other becomes one too
      view, plain = (b, a) if plain_a else (a, b)
      root = sp.find(plain.space)
      sp.alias[root] = (view.space, view.inner)
      if sp.fixed[root]:
        self._fix(view)
      return view
    if a.inner != b.inner:
      raise ValueError(f"channel_groups: {where} joins channel layouts of stride {a.inner} and {b.inner}.")
    sp.union(a.space, b.space, where)
    return a

  def _join_parts(self, a: _Dim, b: _Dim, where: str) -> _Dim:
    """Joins merged axes part by part, matching strides; a part without a counterpart on a
    single-part side indexes positions inside a channel's block (a kernel window), no channel."""
    multi, other = (a, b) if len(a.parts) >= len(b.parts) else (b, a)
    sp = self.spaces
    if other.inner == 1 and sp.size[sp.find(other.space)] == other.length:
      # a plain axis meets a merge of several (e.g. a flattened image): it is their joint view,
      # which can only be followed when every part is fixed (an input) and so is the view
      if all(sp.fixed[sp.find(space)] for space, _ in multi.parts):
        self._fix(other)
        return multi
      raise ValueError(f"channel_groups: {where} joins a plain axis with a merge of several channel axes.")
    theirs = dict((inner, space) for space, inner in other.parts)
    matched = False
    for space, inner in multi.parts:
      if inner in theirs:
        self.spaces.union(theirs.pop(inner), space, where)
        matched = True
      elif len(other.parts) == 1:
        self.spatial.append(space)
      else:
        raise ValueError(f"channel_groups: {where} joins merged axes whose layouts do not match.")
    if not matched or theirs:
      raise ValueError(f"channel_groups: {where} joins merged axes whose layouts do not match.")
    return other if len(other.parts) == 1 else multi

  def _fix(self, d: _Dim) -> None:
    self.spaces.fixed[self.spaces.find(d.space)] = True

  def fix_all(self, dims: Dims) -> None:
    for d in dims:
      if d is not None:
        self._fix(d)

  def elementwise(self, eqn, ins: list[Dims]) -> list[Dims]:
    shape = eqn.outvars[0].aval.shape
    out: Dims = [None] * len(shape)
    for v, dims in zip(eqn.invars, ins, strict=True):
      vshape = _shape(v)
      if len(vshape) != len(shape):
        if vshape == ():
          continue
        raise ValueError(
          f"channel_groups: {eqn.primitive} with operands of rank {len(vshape)} and {len(shape)}."
        )
      for i, (d, n) in enumerate(zip(dims, vshape, strict=True)):
        if n == shape[i]:
          out[i] = self.join(out[i], d, str(eqn.primitive))
    return [out]

  def run(self, jaxpr: jcore.Jaxpr, ins: list[Dims], taint: list[bool]) -> tuple[list[Dims], list[bool]]:
    """Dims of the outputs, and which depend on the network inputs (activations, not weights)."""
    env: dict[Any, Dims] = {}
    tainted: set = set()

    def read(v):
      if isinstance(v, jcore.Literal):
        return [None] * len(np.shape(v.val))
      return env[v]

    for v, dims, t in zip(jaxpr.invars, ins, taint, strict=True):
      env[v] = dims
      if t:
        tainted.add(v)
    for v in jaxpr.constvars:
      env[v] = [None] * len(v.aval.shape)
    for eqn in jaxpr.eqns:
      t_in = [not isinstance(v, jcore.Literal) and v in tainted for v in eqn.invars]
      outs, t_out = self.eqn(eqn, [read(v) for v in eqn.invars], t_in)
      for v, dims, t in zip(eqn.outvars, outs, t_out, strict=True):
        env[v] = dims
        if t:
          tainted.add(v)
    return [read(v) for v in jaxpr.outvars], [
      not isinstance(v, jcore.Literal) and v in tainted for v in jaxpr.outvars
    ]

  def eqn(self, eqn, ins: list[Dims], taint: list[bool]) -> tuple[list[Dims], list[bool]]:
    sub = _sub_jaxpr(eqn)
    if sub is not None:
      return self.run(sub.jaxpr, ins, taint)
    return self.primitive(eqn, ins, taint), [any(taint)] * len(eqn.outvars)

  def primitive(self, eqn, ins: list[Dims], taint: list[bool]) -> list[Dims]:
    name = eqn.primitive.name
    if name in _ELEMENTWISE:
      return self.elementwise(eqn, ins)
    if name in _PASS_FIRST:
      return [list(ins[0])]
    if name == "broadcast_in_dim":
      out: Dims = [None] * len(eqn.params["shape"])
      for d, axis, n in zip(ins[0], eqn.params["broadcast_dimensions"], _shape(eqn.invars[0]), strict=True):
        if n == eqn.params["shape"][axis]:
          out[axis] = d
      return [out]
    if name == "transpose":
      return [[ins[0][p] for p in eqn.params["permutation"]]]
    if name in ("reduce_sum", "reduce_max", "reduce_min", "argmax", "argmin"):
      # a reduction over channels (a LayerNorm's statistics, a softmax) sees every channel, so
      # removing one changes the result: those channels are fixed
      axes = set(eqn.params["axes"])
      self.fix_all([d for i, d in enumerate(ins[0]) if i in axes])
      return [[d for i, d in enumerate(ins[0]) if i not in axes]]
    if name in ("concatenate", "pad", "slice"):
      return [self.reshaped_axes(eqn, ins)]
    if name == "reduce_window_max" or name == "reduce_window_sum" or name == "reduce_window":
      dims = eqn.params.get("window_dimensions")
      self._no_window_over_channels(eqn, ins[0], dims)
      return [list(ins[0])]
    if name == "reshape":
      return [self.reshape(eqn, ins[0])]
    if name == "squeeze":
      drop = {a % len(ins[0]) for a in eqn.params["dimensions"]}
      return [[d for i, d in enumerate(ins[0]) if i not in drop]]
    if name == "expand_dims":
      out = list(ins[0])
      for a in sorted(eqn.params["dimensions"]):
        out.insert(a, None)
      return [out]
    if name == "dot_general":
      return [self.dot(eqn, ins, taint)]
    if name == "conv_general_dilated":
      return [self.conv(eqn, ins, taint)]
    if name in _INDEXED:
      # reads at computed indices (an embedding lookup): every axis they touch is kept whole
      for dims in ins:
        self.fix_all(dims)
      out = [[None] * len(v.aval.shape) for v in eqn.outvars]
      for dims, v in zip(out, eqn.outvars, strict=True):
        for i, n in enumerate(v.aval.shape):
          if n > 1:
            dims[i] = _Dim(self.spaces.new(int(n)), 1, int(n))
            self._fix(dims[i])
      return out
    if name in _NO_CHANNELS:
      for dims in ins:
        self.fix_all(dims)
      return [[None] * len(v.aval.shape) for v in eqn.outvars]
    raise ValueError(
      f"channel_groups: the primitive {name!r} is not supported (it may move or mix channels in a way "
      "this tracer cannot follow). Fix: trace a function without it, or extend pruning_jax.surgery."
    )

  def reshaped_axes(self, eqn, ins: list[Dims]) -> Dims:
    """Concatenate, pad and slice: an axis they change keeps its channels whole (fixed; offsets
    into a group are not followed); the other axes pass, joined across operands."""
    shape = eqn.outvars[0].aval.shape
    changed = set(range(len(shape)))
    if eqn.primitive.name == "concatenate":
      changed = {eqn.params["dimension"]}
    elif eqn.primitive.name == "pad":
      changed = {i for i, cfg in enumerate(eqn.params["padding_config"]) if tuple(cfg) != (0, 0, 0)}
    else:
      strides = eqn.params.get("strides") or (1,) * len(shape)
      changed = {
        i
        for i, (a, b, st, n) in enumerate(
          zip(
            eqn.params["start_indices"],
            eqn.params["limit_indices"],
            strides,
            _shape(eqn.invars[0]),
            strict=True,
          )
        )
        if (a, b, st) != (0, n, 1)
      }
    operands = ins if eqn.primitive.name == "concatenate" else ins[:1]
    out: Dims = [None] * len(shape)
    for dims in operands:
      for i, d in enumerate(dims):
        if i in changed:
          if d is not None:
            self._fix(d)
        else:
          out[i] = self.join(out[i], d, str(eqn.primitive))
    for i in changed:
      if any(dims[i] is not None for dims in operands) and shape[i] > 1:
        out[i] = _Dim(self.spaces.new(int(shape[i])), 1, int(shape[i]))
        self._fix(out[i])
    return out

  def _no_window_over_channels(self, eqn, dims: Dims, window) -> None:
    for d, w in zip(dims, window or (), strict=False):
      if d is not None and w != 1:
        raise ValueError(f"channel_groups: {eqn.primitive} pools over a channel axis.")

  def reshape(self, eqn, dims: Dims) -> Dims:
    old, new = tuple(_shape(eqn.invars[0])), tuple(eqn.params["new_sizes"])
    out: Dims = [None] * len(new)
    # walk both shapes, matching runs of axes with equal products
    i = j = 0
    while i < len(old) or j < len(new):
      gi, gj = [i], [j]
      po = old[i] if i < len(old) else 1
      pn = new[j] if j < len(new) else 1
      while po != pn:
        if po < pn:
          i += 1
          gi.append(i)
          po *= old[i]
        else:
          j += 1
          gj.append(j)
          pn *= new[j]
      i, j = i + 1, j + 1
      gi = [a for a in gi if a < len(old)]
      gj = [a for a in gj if a < len(new)]
      carried = [(a, dims[a]) for a in gi if dims[a] is not None]
      if not carried:
        continue
      targets = [b for b in gj if new[b] > 1]
      if len(carried) == 1 and len(gi) == 1 and tuple(new[b] for b in gj) == (old[carried[0][0]],):
        out[gj[0]] = carried[0][1]
      elif len(targets) == 1:  # merge: the axes fold into one larger axis, each a part of it
        parts = []
        for a, d in carried:
          if d.extra:
            raise ValueError("channel_groups: a reshape merges an axis that is already merged.")
          stride = int(np.prod([old[k] for k in gi if k > a], dtype=np.int64)) * d.inner
          parts.append((d.space, stride))
        (space, inner), extra = parts[0], tuple(parts[1:])
        out[targets[0]] = _Dim(space, inner, int(new[targets[0]]), extra)
      else:  # a split (e.g. into attention heads): the channels are kept whole
        for _, d in carried:
          self._fix(d)
        for b in targets:
          out[b] = _Dim(self.spaces.new(int(new[b])), 1, int(new[b]))
          self._fix(out[b])
    return out

  def dot(self, eqn, ins: list[Dims], taint: list[bool]) -> Dims:
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    lhs, rhs = ins
    for dims, contract, batch, t in ((lhs, lc, lb, taint[0]), (rhs, rc, rb, taint[1])):
      if not t:  # a weight: its contracted axes consume channels, its free axes produce them
        self.mark(dims, contract, "in")
        self.mark(dims, [i for i in range(len(dims)) if i not in contract and i not in batch], "out")
    if all(taint):
      # two activations contracted (attention's q . k): models scale the product by its width
      # (1 / sqrt(d)), which a rebuilt narrower model would change, so those channels stay whole
      self.fix_all([lhs[a] for a in lc] + [rhs[b] for b in rc])
    for a, b in zip(lc, rc, strict=True):
      self.join(lhs[a], rhs[b], "dot_general (contraction)")
    for a, b in zip(lb, rb, strict=True):
      self.join(lhs[a], rhs[b], "dot_general (batch)")
    free_l = [d for i, d in enumerate(lhs) if i not in lc and i not in lb]
    free_r = [d for i, d in enumerate(rhs) if i not in rc and i not in rb]
    return [lhs[a] for a in lb] + free_l + free_r

  def conv(self, eqn, ins: list[Dims], taint: list[bool]) -> Dims:
    dn = eqn.params["dimension_numbers"]
    lhs, rhs = ins
    if not taint[1]:
      self.mark(rhs, [dn.rhs_spec[1]], "in")
      self.mark(rhs, [dn.rhs_spec[0]], "out")
    groups = eqn.params["feature_group_count"]
    if eqn.params.get("batch_group_count", 1) != 1:
      raise ValueError("channel_groups: conv_general_dilated with batch_group_count != 1 is not supported.")
    l_spec, r_spec, o_spec = dn.lhs_spec, dn.rhs_spec, dn.out_spec
    out: Dims = [None] * len(o_spec)
    if groups == 1:
      self.join(lhs[l_spec[1]], rhs[r_spec[1]], "conv_general_dilated (input channels)")
      out[o_spec[1]] = rhs[r_spec[0]]
    elif groups == _shape(eqn.invars[0])[l_spec[1]] and _shape(eqn.invars[1])[r_spec[1]] == 1:
      # depthwise, with a channel multiplier m: input channel c gives outputs c m .. c m + m - 1
      # (lax.conv_general_dilated_patches is one, m being the window size)
      c_in, c_out = _shape(eqn.invars[0])[l_spec[1]], _shape(eqn.invars[1])[r_spec[0]]
      d = lhs[l_spec[1]]
      view = None if d is None else _Dim(d.space, d.inner * (c_out // c_in), c_out) if c_out != c_in else d
      out[o_spec[1]] = self.join(view, rhs[r_spec[0]], "depthwise conv")
    else:
      raise ValueError(
        f"channel_groups: grouped convolution (feature_group_count={groups}) is not supported."
      )
    for k in l_spec[2:]:
      if lhs[k] is not None and not self.spaces.fixed[self.spaces.find(lhs[k].space)]:
        raise ValueError("channel_groups: a convolution slides over a channel axis.")
    self.spatial += [rhs[k].space for k in r_spec[2:] if rhs[k] is not None]
    return out


_ELEMENTWISE = frozenset(
  {
    "add", "sub", "mul", "div", "max", "min", "pow", "select_n", "add_any", "atan2", "rem",
    "nextafter", "eq", "ne", "lt", "le", "gt", "ge", "and", "or", "xor", "clamp",
  }
)  # fmt: skip
_PASS_FIRST = frozenset(
  {
    "neg", "exp", "log", "log1p", "expm1", "tanh", "logistic", "abs", "sign", "sqrt", "rsqrt",
    "integer_pow", "square", "erf", "erfc", "erf_inv", "sin", "cos", "floor", "ceil", "round",
    "is_finite", "not", "convert_element_type", "stop_gradient", "copy", "copy_p", "reduce_precision",
    "exp2", "cbrt", "tan", "asinh", "acosh", "atanh", "real", "imag", "optimization_barrier",
  }
)  # fmt: skip
# reads and writes at computed indices: their operands' and results' axes are kept whole
_INDEXED = frozenset(
  {"gather", "dynamic_slice", "dynamic_update_slice", "scatter", "scatter-add", "scatter_add"}
)
# primitives whose results carry no channel of their operands (e.g. random bits)
_NO_CHANNELS = frozenset(
  {"iota", "random_bits", "random_seed", "random_wrap", "random_unwrap", "threefry2x32"}
)


def _shape(v) -> tuple[int, ...]:
  return tuple(v.aval.shape) if hasattr(v, "aval") else tuple(np.shape(v.val))


def channel_groups(fn: Callable[..., Any], tree: PyTree, *inputs: Any) -> list[ChannelGroup]:
  """The channel groups of ``fn(tree, *inputs)``: the axes of ``tree``'s leaves that must shrink
  together.

  Args:
    fn: ``(tree, *inputs) -> outputs``, e.g. ``lambda v, x: model.apply(v, x)`` with ``v`` the
      Flax variables (params and batch statistics, so BatchNorm's running mean and variance join
      their channels' groups).
    tree: the pytree whose leaves are grouped (arrays or ``jax.ShapeDtypeStruct``).
    *inputs: example inputs; their axes and the outputs' are fixed (never shrink).

  Returns:
    One :class:`ChannelGroup` per set of joined channel axes that includes a leaf axis, in the
    order of the first member; ``prunable`` is False for those tied to an input or output.

  Raises:
    ValueError: a primitive the tracer does not know on a channel axis, or an operation that
      moves channels in a way it cannot follow (named).

  Example:
    >>> import jax.numpy as jnp
    >>> params = {"w1": jnp.ones((3, 5)), "w2": jnp.ones((5, 5)), "w3": jnp.ones((5, 2))}
    >>> def fn(p, x):
    ...   h = x @ p["w1"]
    ...   return (h + h @ p["w2"]) @ p["w3"]  # the residual ties w1's and w2's outputs
    >>> [g.describe() for g in channel_groups(fn, params, jnp.ones((1, 3))) if g.prunable]
    ['5 channels: w1 axis 1, w2 axis 0, w2 axis 1, w3 axis 0']
  """
  leaves = leaves_with_paths(tree)
  treedef = jax.tree.structure(tree)
  spaces = _Spaces()
  tracer = _Tracer(spaces)

  def flat(leaf_arrays, *xs):
    return fn(jax.tree.unflatten(treedef, leaf_arrays), *xs)

  avals = [jax.ShapeDtypeStruct(np.shape(x), x.dtype) for _, x in leaves]
  closed = jax.make_jaxpr(flat)(avals, *inputs)
  leaf_dims = [_plain_dims(spaces, np.shape(x)) for _, x in leaves]
  input_dims = [_plain_dims(spaces, v.aval.shape) for v in closed.jaxpr.invars[len(leaves) :]]
  for dims in input_dims:
    tracer.fix_all(dims)
  outs, _ = tracer.run(closed.jaxpr, leaf_dims + input_dims, [False] * len(leaves) + [True] * len(input_dims))
  for dims in outs:
    tracer.fix_all(dims)

  spatial = {spaces.find(s) for s in tracer.spatial}
  by_root: dict[int, list[Member]] = {}
  for (path, _), dims in zip(leaves, leaf_dims, strict=True):
    for axis, d in enumerate(dims):
      if d is None:
        continue
      root, inner = spaces.find(d.space), d.inner
      while root in spaces.alias:
        target, step = spaces.alias[root]
        root, inner = spaces.find(target), inner * step
      if root not in spatial:
        role = tracer.roles.get(d.space, "elementwise")
        by_root.setdefault(root, []).append(Member(path_str(path), axis, inner, role))
  return [ChannelGroup(spaces.size[r], tuple(m), not spaces.fixed[r]) for r, m in by_root.items()]


def describe_groups(groups: Sequence[ChannelGroup], tree: PyTree | None = None) -> str:
  """All groups, one numbered line each (the index is the one ``keep`` uses).

  Args:
    groups: from :func:`channel_groups`.
    tree: the tree they were computed on, to print each member's shape (optional).

  Returns:
    The text.

  Example:
    >>> import jax.numpy as jnp
    >>> params = {"a": jnp.ones((4, 8)), "b": jnp.ones((8, 3))}
    >>> groups = channel_groups(lambda p, x: x @ p["a"] @ p["b"], params, jnp.ones((1, 4)))
    >>> print(describe_groups(groups, params))
    [0] 4 channels (fixed): a[4, 8] axis 0
    [1] 8 channels: a[4, 8] axis 1, b[8, 3] axis 0
    [2] 3 channels (fixed): b[8, 3] axis 1
  """
  shapes = None if tree is None else {path_str(p): tuple(np.shape(x)) for p, x in leaves_with_paths(tree)}
  return "\n".join(f"[{i}] {g.describe(shapes)}" for i, g in enumerate(groups))


def channel_index(length: int, member: Member, channels: int) -> np.ndarray:
  """The channel each index of a member axis belongs to: ``(i // inner) % channels``.

  Args:
    length: the axis' length.
    member: the member (its ``inner``).
    channels: the group's channel count.

  Returns:
    An int array of shape ``(length,)``.

  Example:
    >>> channel_index(6, Member("dense", 0, 2), 3).tolist()  # channels-first flatten, 2 px each
    [0, 0, 1, 1, 2, 2]
  """
  return (np.arange(length) // member.inner) % channels


Keep = Sequence[Any] | Mapping[int, Any]


def _per_group(groups: Sequence[ChannelGroup], values, where: str, name: str, kind: str) -> list:
  """A list with one entry (or None) per group from a list or a dict keyed by group index."""
  n = len(groups)
  if isinstance(values, Mapping):
    bad = [k for k in values if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k < n]
    if bad:
      raise ValueError(
        f"{where}: {name} names groups {bad}, but there are {n} groups (indices 0..{n - 1}). Fix: key "
        f"{name} by the index of the group in the list channel_groups returned (describe_groups shows it)."
      )
    return [values.get(i) for i in range(n)]
  vectors = list(values)
  if len(vectors) != n:
    raise ValueError(
      f"{where}: {name} has {len(vectors)} entries for {n} groups. Fix: one {kind} (or None) per "
      f"group, or a dict {{group index: {kind}}}."
    )
  return vectors


def _keep_vectors(groups: Sequence[ChannelGroup], keep: Keep, allow_collapse: bool, where: str) -> list:
  """One bool vector (or None: keep all) per group, checked against the group."""
  vectors = _per_group(groups, keep, where, "keep", "bool vector")
  out = []
  for i, (g, v) in enumerate(zip(groups, vectors, strict=True)):
    if v is None:
      out.append(None)
      continue
    v = v if hasattr(v, "dtype") else np.asarray(v)
    if v.dtype != bool or v.shape != (g.channels,):
      raise ValueError(
        f"{where}: keep[{i}] must be a bool vector of shape ({g.channels},) for group {i} "
        f"({g.describe()}); got {v.dtype}{list(v.shape)}. Fix: True marks a kept channel, e.g. "
        f"np.isin(np.arange({g.channels}), kept_indices)."
      )
    concrete = static_value(v)
    collapse = (
      f"{where}: keep[{i}] removes every channel of group {i} ({g.describe()}), which disconnects "
      "the network (layer collapse). Fix: keep at least one channel, or pass allow_collapse=True."
    )
    if concrete is None:
      if not g.prunable:
        raise ValueError(
          f"{where}: group {i} is fixed ({g.describe()}), so its keep must be None, not traced."
        )
      if not allow_collapse:
        validation.check_traced(jnp.any(v), collapse)
      out.append(v)
      continue
    concrete = np.asarray(concrete)
    if concrete.all() and not g.prunable:
      out.append(None)
      continue
    if not g.prunable:
      raise ValueError(
        f"{where}: group {i} cannot shrink: {g.describe()}. Fix: pass None (or all True) for it."
      )
    if not allow_collapse and not concrete.any():
      raise ValueError(collapse)
    out.append(concrete)
  return out


def _leaf_axes(tree: PyTree, groups: Sequence[ChannelGroup], vectors: list, where: str) -> dict:
  """``{slash path: [(axis, channel of each index, keep vector), ...]}`` for the shrinking members."""
  shapes = {path_str(p): np.shape(x) for p, x in leaves_with_paths(tree) if is_array(x)}
  out: dict[str, list] = {}
  for i, (g, v) in enumerate(zip(groups, vectors, strict=True)):
    for m in g.members:
      if m.path not in shapes or m.axis >= len(shapes[m.path]):
        raise ValueError(
          f"{where}: group {i} has the member {m.path} axis {m.axis}, which this tree lacks. Fix: "
          "compute the groups with channel_groups on this tree (e.g. the full Flax variables)."
        )
      length = shapes[m.path][m.axis]
      if length % (g.channels * m.inner):
        raise ValueError(
          f"{where}: {m.path} axis {m.axis} has length {length}, which does not hold group {i}'s "
          f"{g.channels} channels of {m.inner}. Fix: compute the groups on this tree."
        )
      if v is not None:
        out.setdefault(m.path, []).append((m.axis, channel_index(length, m, g.channels), v))
  return out


def channel_masks(
  tree: PyTree, groups: Sequence[ChannelGroup], keep: Keep, *, allow_collapse: bool = False
) -> PyTree:
  """Masks that zero the removed channels of every member: the masked twin of :func:`shrink`.

  Applied with :func:`pruning_jax.apply_masks` to the whole tree (BatchNorm scale and bias
  included), the network computes what the shrunk one does, with zeros where channels were.
  Works under ``jit`` with traced keep vectors (e.g. soft filter pruning's per-epoch zeroing).

  Args:
    tree: the pytree the groups were computed on.
    groups: from :func:`channel_groups`.
    keep: one bool vector of length ``channels`` (True: kept) or None per group, or a dict
      ``{group index: vector}``; groups left out keep every channel.
    allow_collapse: allow a group to lose every channel.

  Returns:
    A mask pytree (tree's structure): members get bool masks of broadcastable shape, every other
    leaf a 0-d True.

  Raises:
    ValueError: a keep vector of the wrong length or dtype, an index out of range, a fixed group
      asked to shrink, a collapse, or groups that do not fit ``tree``.

  Example:
    >>> import jax.numpy as jnp
    >>> params = {"a": jnp.ones((4, 3)), "b": jnp.ones((3, 2))}
    >>> groups = channel_groups(lambda p, x: x @ p["a"] @ p["b"], params, jnp.ones((1, 4)))
    >>> masks = channel_masks(params, groups, {1: jnp.array([True, False, True])})
    >>> masks["a"].tolist(), masks["b"].shape
    ([[True, False, True]], (3, 1))
  """
  vectors = _keep_vectors(groups, keep, allow_collapse, "channel_masks")
  axes = _leaf_axes(tree, groups, vectors, "channel_masks")

  def mask(path, leaf):
    if not is_array(leaf):
      return leaf
    m = jnp.asarray(True)
    for axis, channel, v in axes.get(path_str(path), ()):
      shape = [1] * np.ndim(leaf)
      shape[axis] = channel.size
      m = m & jnp.asarray(v)[channel].reshape(shape)
    return m

  return jax.tree_util.tree_map_with_path(mask, tree)


ROLES = ("out", "in", "elementwise")


def scale_channels(
  tree: PyTree,
  groups: Sequence[ChannelGroup],
  scales: Sequence[Any] | Mapping[int, Any],
  *,
  roles: Sequence[str] = ROLES,
) -> PyTree:
  """Multiplies every channel of a group's members by a per-channel value: channel gates as a
  reparametrization of the weights, without touching the model's code.

  Scaling a BatchNorm's scale and bias by ``g`` (``roles=("elementwise",)``) is exactly
  ``g * BN(x)``: the gate after BN and before the nonlinearity of Pruning from Scratch.

  Args:
    tree: the pytree the groups were computed on.
    groups: from :func:`channel_groups`.
    scales: one float vector of length ``channels`` (or None: unscaled) per group, or a dict
      ``{group index: vector}``; may be traced (gates learned under ``jit``).
    roles: the member roles to scale (``"out"``, ``"in"``, ``"elementwise"``).

  Returns:
    ``tree`` with the chosen members scaled; every other leaf as it was.

  Raises:
    ValueError: an unknown role, an index out of range, a vector of the wrong shape or not
      floating, or groups that do not fit ``tree``.

  Example:
    >>> import jax.numpy as jnp
    >>> params = {"a": jnp.ones((2, 3)), "b": jnp.ones((3, 2))}
    >>> groups = channel_groups(lambda p, x: x @ p["a"] @ p["b"], params, jnp.ones((1, 2)))
    >>> out = scale_channels(params, groups, {1: jnp.array([0.0, 0.5, 1.0])}, roles=("out",))
    >>> out["a"][0].tolist(), out["b"][:, 0].tolist()
    ([0.0, 0.5, 1.0], [1.0, 1.0, 1.0])
  """
  where = "scale_channels"
  bad = sorted(set(roles) - set(ROLES))
  if bad:
    raise ValueError(f"{where}: roles {bad} are unknown; expected some of {ROLES}.")
  vectors = _per_group(groups, scales, where, "scales", "float vector")
  for i, (g, v) in enumerate(zip(groups, vectors, strict=True)):
    floating = v is None or jnp.issubdtype(jnp.result_type(v), jnp.floating)
    if v is not None and (jnp.shape(v) != (g.channels,) or not floating):
      raise ValueError(
        f"{where}: scales[{i}] must be a float vector of shape ({g.channels},) for group {i} "
        f"({g.describe()}); got {jnp.result_type(v)}{list(jnp.shape(v))}."
      )
  picked = [g._replace(members=tuple(m for m in g.members if m.role in roles)) for g in groups]
  axes = _leaf_axes(tree, picked, vectors, where)

  def scaled(path, leaf):
    for axis, channel, v in axes.get(path_str(path), ()) if is_array(leaf) else ():
      shape = [1] * np.ndim(leaf)
      shape[axis] = channel.size
      leaf = leaf * jnp.asarray(v, jnp.result_type(leaf))[channel].reshape(shape)
    return leaf

  return jax.tree_util.tree_map_with_path(scaled, tree)


def shrink(
  tree: PyTree, groups: Sequence[ChannelGroup], keep: Keep, *, allow_collapse: bool = False
) -> PyTree:
  """A copy of ``tree`` whose member axes hold only the kept channels.

  Args:
    tree: the pytree the groups were computed on (params, Flax variables with batch statistics,
      an NNX state or an Equinox module's arrays).
    groups: from :func:`channel_groups`.
    keep: one bool vector of length ``channels`` (True: kept) or None per group, or a dict
      ``{group index: vector}``; concrete (not traced): the shapes depend on it.
    allow_collapse: allow a group to lose every channel.

  Returns:
    The smaller pytree, same structure; leaves outside the shrinking groups are the same objects.

  Raises:
    ValueError: a traced keep vector, a vector of the wrong length or dtype, an index out of
      range, a fixed group asked to shrink, a collapse, or groups that do not fit ``tree``.

  Example:
    >>> import jax.numpy as jnp
    >>> params = {"a": jnp.ones((4, 3)), "b": jnp.ones((3, 2))}
    >>> groups = channel_groups(lambda p, x: x @ p["a"] @ p["b"], params, jnp.ones((1, 4)))
    >>> small = shrink(params, groups, {1: [True, False, True]})
    >>> small["a"].shape, small["b"].shape
    ((4, 2), (2, 2))
  """
  vectors = _keep_vectors(groups, keep, allow_collapse, "shrink")
  for i, v in enumerate(vectors):
    if v is not None and not isinstance(v, np.ndarray):
      raise ValueError(
        f"shrink: keep[{i}] is traced, but the shrunk shapes depend on it. Fix: call shrink outside "
        "jit (channel_masks is the traceable form)."
      )
  axes = _leaf_axes(tree, groups, vectors, "shrink")

  def cut(path, leaf):
    for axis, channel, v in axes.get(path_str(path), ()):
      index = (slice(None),) * axis + (np.flatnonzero(v[channel]),)
      leaf = leaf[index]
    return leaf

  return jax.tree_util.tree_map_with_path(cut, tree)


def shrink_module(
  module: Any,
  variables: PyTree,
  groups: Sequence[ChannelGroup],
  keep: Keep,
  *inputs: Any,
  allow_collapse: bool = False,
) -> tuple[Any, PyTree]:
  """Shrinks a Flax linen model of :mod:`pruning_jax.models` with its variables.

  The module must say which of its fields give the widths of a params tree
  (``module.widths_of(params)``, as every model in :mod:`pruning_jax.models` does); the
  returned module is ``module.clone(**widths)``, checked to initialise to exactly the shrunk
  shapes.

  Args:
    module: the linen module.
    variables: its variables (``{"params": ..., "batch_stats": ...}``), the tree the groups
      were computed on.
    groups: from :func:`channel_groups`.
    keep: as :func:`shrink`.
    *inputs: example inputs of ``module.init`` (shapes only are used).
    allow_collapse: as :func:`shrink`.

  Returns:
    ``(smaller module, smaller variables)``.

  Raises:
    ValueError: what :func:`shrink` raises; a module without ``widths_of``; or a rebuilt module
      whose variables' shapes differ from the shrunk ones (named by path).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from pruning_jax import models
    >>> m = models.LeNet300100(widths=(6, 4))
    >>> x = jnp.ones((1, 8))
    >>> v = m.init(jax.random.key(0), x)
    >>> groups = channel_groups(lambda v, x: m.apply(v, x), v, x)
    >>> print(describe_groups(groups).splitlines()[0])
    [0] 6 channels: params/Dense_0/bias axis 0, params/Dense_0/kernel axis 1, params/Dense_1/kernel axis 0
    >>> small, v2 = shrink_module(m, v, groups, {0: jnp.arange(6) < 3}, x)
    >>> small.widths
    (3, 4)
  """
  if not hasattr(module, "widths_of"):
    raise ValueError(
      f"shrink_module: {type(module).__name__} has no widths_of(params). Fix: use shrink on the "
      "variables and rebuild the module yourself, or give the module a widths_of method."
    )
  if not isinstance(variables, Mapping) or "params" not in variables:
    raise ValueError(
      "shrink_module: variables must be the module's Flax variables, {'params': ..., ...}. Fix: pass "
      "what module.init returned (with any batch statistics)."
    )
  small = shrink(variables, groups, keep, allow_collapse=allow_collapse)
  rebuilt = module.clone(**module.widths_of(small["params"]))
  expected = jax.eval_shape(rebuilt.init, jax.random.key(0), *inputs)
  want = {path_str(p): np.shape(x) for p, x in leaves_with_paths(expected)}
  got = {path_str(p): np.shape(x) for p, x in leaves_with_paths(small)}
  wrong = sorted(p for p in want.keys() | got.keys() if want.get(p) != got.get(p))
  if wrong:
    detail = ", ".join(f"{p}: rebuilt {want.get(p)} vs shrunk {got.get(p)}" for p in wrong[:4])
    raise ValueError(
      f"shrink_module: {type(module).__name__}(**widths_of(...)) does not rebuild the shrunk shapes "
      f"({detail}). Fix: its widths_of must read every width the groups change."
    )
  return rebuilt, small


def keep_from_masks(tree: PyTree, groups: Sequence[ChannelGroup], masks: PyTree) -> dict[int, np.ndarray]:
  """The channels a mask pytree removes: channel c of a group goes when every member found in
  ``masks`` is False on all of c's entries, so shrinking never changes what the masked network
  computes. Members ``masks`` does not hold (e.g. BatchNorm statistics, when ``masks`` covers
  only ``{"params": ...}``) are not consulted; a 0-d True mask keeps every channel.

  Args:
    tree: the pytree the groups were computed on (for the members' shapes).
    groups: from :func:`channel_groups`.
    masks: bool masks of ``tree`` or of a subtree at the same paths (e.g. ``{"params": masks}``),
      of the leaves' shapes or shapes that broadcast to them.

  Returns:
    ``{group index: bool keep vector}`` for the prunable groups with a member in ``masks``.

  Raises:
    ValueError: a mask that does not broadcast to its leaf (named).

  Example:
    >>> import jax.numpy as jnp
    >>> params = {"a": jnp.ones((4, 3)), "b": jnp.ones((3, 2))}
    >>> groups = channel_groups(lambda p, x: x @ p["a"] @ p["b"], params, jnp.ones((1, 4)))
    >>> masks = {"a": jnp.array([[True, False, True]]), "b": jnp.array([[True], [False], [True]])}
    >>> keep_from_masks(params, groups, masks)[1].tolist()
    [True, False, True]
  """
  shapes = {path_str(p): np.shape(x) for p, x in leaves_with_paths(tree) if is_array(x)}
  found = {path_str(p): m for p, m in leaves_with_paths(masks)}
  keep: dict[int, np.ndarray] = {}
  for i, g in enumerate(groups):
    if not g.prunable:
      continue
    alive = None
    for m in g.members:
      if m.path not in found:
        continue
      try:
        full = np.broadcast_to(np.asarray(found[m.path], bool), shapes[m.path])
      except ValueError as e:
        raise ValueError(
          f"keep_from_masks: the mask at {m.path} of shape {np.shape(found[m.path])} does not broadcast "
          f"to its leaf's {shapes[m.path]}. Fix: masks of the tree's shapes."
        ) from e
      rows = np.moveaxis(full, m.axis, 0).reshape(full.shape[m.axis], -1).any(axis=1)
      per_channel = np.zeros(g.channels, bool)
      np.logical_or.at(per_channel, channel_index(rows.size, m, g.channels), rows)
      alive = per_channel if alive is None else alive | per_channel
    if alive is not None:
      keep[i] = alive
  return keep
