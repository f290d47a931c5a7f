"""CIFAR ResNets with BasicBlocks: ResNet20/56 (He et al. 2016, 3 stages of 16/32/64 with
n = 3/9 blocks) and ResNet18 (4 stages of 64-512, 2 blocks each, 3x3 stem). Projection
shortcuts (1x1 conv + BN) where shape changes. ``inner_widths`` sets each block's first conv
width (the channels Pruning from Scratch prunes; residual widths stay fixed).

Wide ResNets (Zagoruyko & Komodakis 2016): pre-activation blocks (BN-ReLU-conv twice), a 16-wide
stem, stages of 16k/32k/64k with (depth - 4) / 6 blocks each, a 1x1 projection where the shape
changes, a final BN-ReLU; WRN-22-2 is the RigL reproducibility study's CIFAR-10 network."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import numpy as np

from pruning_jax.models.layers import Conv3x3, he_normal_fan_in


def _bn(train: bool) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)


class BasicBlock(nn.Module):
  """conv-BN-ReLU-conv-BN plus the shortcut (a 1x1 conv-BN where the shape changes), ReLU.

  Attributes:
    inner: channels of the first conv (the width Pruning from Scratch prunes).
    out: channels of the second conv and of the residual stream.
    stride: stride of the first conv and the shortcut.
  """

  inner: int
  out: int
  stride: int = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    if self.stride == 1:
      y = Conv3x3(self.inner, use_bias=False)(x)
    else:
      y = nn.Conv(self.inner, (3, 3), self.stride, padding=1, use_bias=False, kernel_init=he_normal_fan_in)(x)
    y = nn.relu(_bn(train)(y))
    y = _bn(train)(Conv3x3(self.out, use_bias=False)(y))
    if self.stride != 1 or x.shape[-1] != self.out:
      x = _bn(train)(nn.Conv(self.out, (1, 1), self.stride, use_bias=False, kernel_init=he_normal_fan_in)(x))
    return nn.relu(x + y)


class CifarResNet(nn.Module):
  """A CIFAR ResNet of BasicBlocks: a 3x3 stem, stages that halve the map, global pooling.

  Attributes:
    stage_widths: residual width of each stage.
    blocks_per_stage: BasicBlocks per stage.
    inner_widths: one inner width per block (default: its stage width).
    num_classes: classifier outputs.
  """

  stage_widths: Sequence[int] = (16, 32, 64)
  blocks_per_stage: Sequence[int] = (3, 3, 3)
  inner_widths: Sequence[int] | None = None  # one per block; default = the stage width
  num_classes: int = 10

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    n_blocks = sum(self.blocks_per_stage)
    inner = list(self.inner_widths) if self.inner_widths is not None else None
    if inner is not None and len(inner) != n_blocks:
      raise ValueError(f"inner_widths needs one width per block ({n_blocks}), got {len(inner)}.")
    x = nn.relu(_bn(train)(Conv3x3(self.stage_widths[0], use_bias=False)(x)))
    b = 0
    for s, (width, n) in enumerate(zip(self.stage_widths, self.blocks_per_stage, strict=True)):
      for i in range(n):
        stride = 2 if s > 0 and i == 0 else 1
        x = BasicBlock(inner[b] if inner else width, width, stride)(x, train)
        b += 1
    x = x.mean(axis=(1, 2))
    return nn.Dense(self.num_classes)(x)

  def widths_of(self, params) -> dict:
    """The width fields that build this network with the shapes of ``params`` (a shrunk copy).

    Args:
      params: the ``"params"`` collection.

    Returns:
      ``{"stage_widths": ..., "inner_widths": ...}``: each stage's residual width (its first
      block's output BatchNorm) and each block's inner width (its first BatchNorm).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> m = resnet20(stage_widths=(4, 8, 16), blocks_per_stage=(1, 1, 1))
      >>> m.widths_of(m.init(jax.random.key(0), jnp.ones((1, 8, 8, 3)))["params"])
      {'stage_widths': (4, 8, 16), 'inner_widths': (4, 8, 16)}
    """
    firsts = np.cumsum((0, *self.blocks_per_stage[:-1]))
    block = lambda b, bn: int(params[f"BasicBlock_{b}"][f"BatchNorm_{bn}"]["scale"].shape[0])  # noqa: E731
    stage = tuple(block(int(b), 1) for b in firsts)
    inner = tuple(block(b, 0) for b in range(sum(self.blocks_per_stage)))
    return {"stage_widths": stage, "inner_widths": inner}


def resnet20(**kw) -> CifarResNet:
  """ResNet-20 (He et al. 2016): 3 stages of 3 blocks, widths 16/32/64.

  Args:
    **kw: any field of :class:`CifarResNet` (``num_classes``, widths, ...).

  Returns:
    The :class:`CifarResNet` module.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> model = resnet20(num_classes=10)
    >>> params = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    >>> model.apply(params, jnp.zeros((1, 32, 32, 3))).shape
    (1, 10)
  """
  return CifarResNet(**{"stage_widths": (16, 32, 64), "blocks_per_stage": (3, 3, 3), **kw})


def resnet56(**kw) -> CifarResNet:
  """ResNet-56: 3 stages of 9 blocks, widths 16/32/64.

  Args:
    **kw: any field of :class:`CifarResNet` (``num_classes``, widths, ...).

  Returns:
    The :class:`CifarResNet` module.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> model = resnet56(num_classes=10)
    >>> params = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    >>> model.apply(params, jnp.zeros((1, 32, 32, 3))).shape
    (1, 10)
  """
  return CifarResNet(**{"stage_widths": (16, 32, 64), "blocks_per_stage": (9, 9, 9), **kw})


def resnet18(**kw) -> CifarResNet:
  """ResNet-18 for CIFAR: 4 stages of 2 blocks, widths 64/128/256/512.

  Args:
    **kw: any field of :class:`CifarResNet` (``num_classes``, widths, ...).

  Returns:
    The :class:`CifarResNet` module.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> model = resnet18(num_classes=10)
    >>> params = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    >>> model.apply(params, jnp.zeros((1, 32, 32, 3))).shape
    (1, 10)
  """
  return CifarResNet(**{"stage_widths": (64, 128, 256, 512), "blocks_per_stage": (2, 2, 2, 2), **kw})


class WideBlock(nn.Module):
  """A pre-activation block: BN-ReLU-conv3x3-BN-ReLU-conv3x3 plus the shortcut (the identity, or
  a 1x1 conv of the pre-activated input where the shape changes).

  Attributes:
    out: output channels.
    stride: stride of the first conv and the projection.
  """

  out: int
  stride: int = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    o = nn.relu(_bn(train)(x))
    if self.stride == 1:
      y = Conv3x3(self.out, use_bias=False)(o)
    else:
      y = nn.Conv(self.out, (3, 3), self.stride, padding=1, use_bias=False, kernel_init=he_normal_fan_in)(o)
    y = Conv3x3(self.out, use_bias=False)(nn.relu(_bn(train)(y)))
    if self.stride != 1 or x.shape[-1] != self.out:
      x = nn.Conv(self.out, (1, 1), self.stride, use_bias=False, kernel_init=he_normal_fan_in)(o)
    return x + y


class WideResNet(nn.Module):
  """A CIFAR Wide ResNet of pre-activation blocks.

  Attributes:
    stem_width: channels of the first 3x3 conv (16).
    stage_widths: each stage's width (16k, 32k, 64k for widening factor k).
    blocks_per_stage: blocks per stage ((depth - 4) / 6 each).
    num_classes: classifier outputs.
  """

  stem_width: int = 16
  stage_widths: Sequence[int] = (32, 64, 128)
  blocks_per_stage: Sequence[int] = (3, 3, 3)
  num_classes: int = 10

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = Conv3x3(self.stem_width, use_bias=False)(x)
    for s, (width, n) in enumerate(zip(self.stage_widths, self.blocks_per_stage, strict=True)):
      for i in range(n):
        x = WideBlock(width, 2 if s > 0 and i == 0 else 1)(x, train)
    x = nn.relu(_bn(train)(x)).mean(axis=(1, 2))
    return nn.Dense(self.num_classes)(x)


def wrn22_2(**kw) -> WideResNet:
  """WRN-22-2: a 16-wide stem, 3 stages of 3 pre-activation blocks, widths 32/64/128.

  Args:
    **kw: any field of :class:`WideResNet` (``num_classes``, widths, ...).

  Returns:
    The :class:`WideResNet` module.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> model = wrn22_2()
    >>> v = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    >>> model.apply(v, jnp.zeros((1, 32, 32, 3))).shape
    (1, 10)
  """
  return WideResNet(**{"stem_width": 16, "stage_widths": (32, 64, 128), "blocks_per_stage": (3, 3, 3), **kw})


__all__ = [
  "BasicBlock",
  "CifarResNet",
  "WideBlock",
  "WideResNet",
  "resnet18",
  "resnet20",
  "resnet56",
  "wrn22_2",
]
