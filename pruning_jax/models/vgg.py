"""VGG for CIFAR with BatchNorm (VGG11/16/19): 3x3 conv-BN-ReLU stacks, 2x2 max-pools, one
linear classifier on the 1x1x512 map (the common CIFAR variant; Liu et al. / Wang et al.)."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from pruning_jax.models.layers import Conv3x3, he_normal_fan_in

M = "M"  # a 2x2 max-pool in a cfg
CFGS = {
  "vgg11": (64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M),
  "vgg16": (64, 64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M, 512, 512, 512, M),
  "vgg19": (64, 64, M, 128, 128, M, 256, 256, 256, 256, M, 512, 512, 512, 512, M, 512, 512, 512, 512, M),
}


class VGG(nn.Module):
  """VGG for CIFAR: 3x3 conv-BN-ReLU stacks with 2x2 max-pools, one linear classifier.

  Attributes:
    cfg: conv widths, with ``"M"`` where a max-pool goes.
    num_classes: classifier outputs.
    bn_scale_init: initial BN gamma (Pruning from Scratch uses 0.5).
  """

  cfg: Sequence[int | str] = CFGS["vgg16"]
  num_classes: int = 10
  bn_scale_init: float = 1.0  # Pruning from Scratch initializes gamma to 0.5

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    for item in self.cfg:
      if item == M:
        x = nn.max_pool(x, (2, 2), (2, 2))
        continue
      x = Conv3x3(int(item), use_bias=False, kernel_init=he_normal_fan_in)(x)
      x = nn.BatchNorm(
        use_running_average=not train,
        momentum=0.9,
        epsilon=1e-5,
        scale_init=nn.initializers.constant(self.bn_scale_init),
      )(x)
      x = nn.relu(x)
    x = x.reshape(x.shape[0], -1)
    return nn.Dense(self.num_classes)(x)

  def widths_of(self, params) -> dict:
    """The cfg that builds this network with the shapes of ``params`` (a shrunk copy).

    Args:
      params: the ``"params"`` collection.

    Returns:
      ``{"cfg": ...}`` with the pools where they were.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> m = VGG(cfg=(4, "M", 6, "M"))
      >>> m.widths_of(m.init(jax.random.key(0), jnp.ones((1, 8, 8, 3)))["params"])
      {'cfg': (4, 'M', 6, 'M')}
    """
    widths = iter(int(params[f"Conv3x3_{i}"]["kernel"].shape[-1]) for i in range(len(self.cfg)))
    return {"cfg": tuple(M if c == M else next(widths) for c in self.cfg)}


def expanded_cfg(name: str, c: int) -> tuple:
  """Pruning from Scratch's expanded VGG: the standard cfg with its first width 64 set to ``c``
  and every other width scaled alike (``c, c, M, 2c, 2c, M, 4c x3, M, 8c x3, M, 8c x3`` for
  VGG-16; the reference's default ``c`` is 80).

  Args:
    name: ``"vgg11"``, ``"vgg16"`` or ``"vgg19"``.
    c: the expanded first width.

  Returns:
    The cfg, pools where the standard one has them.

  Raises:
    ValueError: an unknown name or ``c < 1``.

  Example:
    >>> expanded_cfg("vgg16", 80)[:6]
    (80, 80, 'M', 160, 160, 'M')
  """
  if name not in CFGS:
    raise ValueError(f"expanded_cfg: {name!r} is not one of {sorted(CFGS)}.")
  if isinstance(c, bool) or not isinstance(c, int) or c < 1:
    raise ValueError(f"expanded_cfg: c must be a positive int, got {c!r}.")
  return tuple(M if w == M else w * c // 64 for w in CFGS[name])


def _widths(name: str, widths: Sequence[int] | None) -> tuple:
  cfg = CFGS[name]
  if widths is None:
    return cfg
  n_conv = sum(1 for c in cfg if c != M)
  if len(widths) != n_conv:
    raise ValueError(f"{name} has {n_conv} conv layers; got {len(widths)} widths.")
  it = iter(widths)
  return tuple(M if c == M else int(next(it)) for c in cfg)


def vgg11(widths: Sequence[int] | None = None, **kw) -> VGG:
  """VGG-11 with BatchNorm.

  Args:
    widths: one width per conv layer, replacing the standard ones (a pruned structure).
    **kw: any field of :class:`VGG` (``num_classes``, ``cfg`` in place of ``widths``, ...).

  Returns:
    The :class:`VGG` module.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> model = vgg11(num_classes=10)
    >>> params = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    >>> model.apply(params, jnp.zeros((1, 32, 32, 3))).shape
    (1, 10)
  """
  return VGG(**{"cfg": _widths("vgg11", widths), **kw})


def vgg16(widths: Sequence[int] | None = None, **kw) -> VGG:
  """VGG-16 with BatchNorm.

  Args:
    widths: one width per conv layer, replacing the standard ones (a pruned structure).
    **kw: any field of :class:`VGG` (``num_classes``, ``cfg`` in place of ``widths``, ...).

  Returns:
    The :class:`VGG` module.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> model = vgg16(num_classes=10)
    >>> params = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    >>> model.apply(params, jnp.zeros((1, 32, 32, 3))).shape
    (1, 10)
  """
  return VGG(**{"cfg": _widths("vgg16", widths), **kw})


def vgg19(widths: Sequence[int] | None = None, **kw) -> VGG:
  """VGG-19 with BatchNorm.

  Args:
    widths: one width per conv layer, replacing the standard ones (a pruned structure).
    **kw: any field of :class:`VGG` (``num_classes``, ``cfg`` in place of ``widths``, ...).

  Returns:
    The :class:`VGG` module.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> model = vgg19(num_classes=10)
    >>> params = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    >>> model.apply(params, jnp.zeros((1, 32, 32, 3))).shape
    (1, 10)
  """
  return VGG(**{"cfg": _widths("vgg19", widths), **kw})


__all__ = ["CFGS", "VGG", "expanded_cfg", "vgg11", "vgg16", "vgg19"]
