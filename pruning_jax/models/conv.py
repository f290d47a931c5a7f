"""Conv2/Conv4/Conv6 (Frankle & Carbin; Zhou et al.; Ramanujan et al.; ASLP, PAPERS.md s.1):
3x3 'SAME' convolutions with bias and ReLU, a 2x2 max-pool after every pair, then
FC 256-256-10. No BatchNorm."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from pruning_jax.models.layers import Conv3x3, he_normal_fan_in, torch_bias_init


class ConvNet(nn.Module):
  """Conv-n: 3x3 conv-ReLU pairs, a 2x2 max-pool after each pair, then a ReLU MLP.

  Attributes:
    conv_widths: output channels of each conv layer.
    dense_widths: widths of the hidden dense layers.
    num_classes: classifier outputs.
    he_normal: Kaiming-normal (fan-in) kernels as in the papers; False: Flax's lecun_normal.
    torch_bias: biases U(+-1/sqrt(fan_in)) as in PyTorch (ASLP keeps them frozen).
  """

  conv_widths: Sequence[int] = (64, 64)
  dense_widths: Sequence[int] = (256, 256)
  num_classes: int = 10
  he_normal: bool = True  # kaiming_normal_(fan_in); False: Flax's lecun_normal
  torch_bias: bool = True  # biases U(+-1/sqrt(fan_in)) as in PyTorch (ASLP keeps them frozen)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train
    kinit = he_normal_fan_in if self.he_normal else nn.initializers.lecun_normal()
    for i, width in enumerate(self.conv_widths):
      binit = torch_bias_init(9 * x.shape[-1]) if self.torch_bias else None
      x = nn.relu(Conv3x3(width, kernel_init=kinit, bias_init=binit)(x))
      if i % 2 == 1:
        x = nn.max_pool(x, (2, 2), (2, 2))
    x = x.reshape(x.shape[0], -1)
    for width in self.dense_widths:
      x = nn.relu(self._dense(width, x, kinit))
    return self._dense(self.num_classes, x, kinit)

  def widths_of(self, params) -> dict:
    """The width fields that build this network with the shapes of ``params`` (a shrunk copy).

    Args:
      params: the ``"params"`` collection.

    Returns:
      ``{"conv_widths": ..., "dense_widths": ...}`` for :meth:`clone` or the factories.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> m = conv2(conv_widths=(4, 6), dense_widths=(8,))
      >>> m.widths_of(m.init(jax.random.key(0), jnp.ones((1, 8, 8, 3)))["params"])
      {'conv_widths': (4, 6), 'dense_widths': (8,)}
    """
    conv = tuple(int(params[f"Conv3x3_{i}"]["kernel"].shape[-1]) for i in range(len(self.conv_widths)))
    dense = tuple(int(params[f"Dense_{i}"]["kernel"].shape[-1]) for i in range(len(self.dense_widths)))
    return {"conv_widths": conv, "dense_widths": dense}

  def _dense(self, width: int, x: jax.Array, kinit) -> jax.Array:
    binit = torch_bias_init(x.shape[-1]) if self.torch_bias else nn.initializers.zeros
    return nn.Dense(width, kernel_init=kinit, bias_init=binit)(x)


def conv2(**kw) -> ConvNet:
  """Conv2: two 64-channel convs, FC 256-256-10.

  Args:
    **kw: any field of :class:`ConvNet` (``num_classes``, widths, ...).

  Returns:
    The :class:`ConvNet` module.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> model = conv2(num_classes=10)
    >>> params = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    >>> model.apply(params, jnp.zeros((1, 32, 32, 3))).shape
    (1, 10)
  """
  return ConvNet(**{"conv_widths": (64, 64), **kw})


def conv4(**kw) -> ConvNet:
  """Conv4: convs 64-64-128-128, FC 256-256-10.

  Args:
    **kw: any field of :class:`ConvNet` (``num_classes``, widths, ...).

  Returns:
    The :class:`ConvNet` module.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> model = conv4(num_classes=10)
    >>> params = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    >>> model.apply(params, jnp.zeros((1, 32, 32, 3))).shape
    (1, 10)
  """
  return ConvNet(**{"conv_widths": (64, 64, 128, 128), **kw})


def conv6(**kw) -> ConvNet:
  """Conv6: convs 64-64-128-128-256-256, FC 256-256-10.

  Args:
    **kw: any field of :class:`ConvNet` (``num_classes``, widths, ...).

  Returns:
    The :class:`ConvNet` module.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> model = conv6(num_classes=10)
    >>> params = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    >>> model.apply(params, jnp.zeros((1, 32, 32, 3))).shape
    (1, 10)
  """
  return ConvNet(**{"conv_widths": (64, 64, 128, 128, 256, 256), **kw})


__all__ = ["ConvNet", "conv2", "conv4", "conv6"]
