"""Shared layers and initializers."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

# PyTorch's kaiming_normal_(mode="fan_in", nonlinearity="relu"): N(0, 2 / fan_in), untruncated.
he_normal_fan_in = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


def torch_bias_init(fan_in: int) -> Callable[..., jax.Array]:
  """PyTorch's default bias init U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

  Args:
    fan_in: the layer's fan-in.

  Returns:
    A Flax initializer ``(key, shape, dtype) -> array``.

  Example:
    >>> import jax
    >>> b = torch_bias_init(4)(jax.random.key(0), (100,))
    >>> bool((abs(b) <= 0.5).all())
    True
  """
  bound = 1.0 / math.sqrt(fan_in)
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


_DN = ("NHWC", "HWIO", "NHWC")


def _conv_same(x: jax.Array, kernel: jax.Array) -> jax.Array:
  return lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=_DN)


@jax.custom_vjp
def conv3x3_same(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Stride-1 'SAME' 3x3 convolution (NHWC, HWIO) whose kernel gradient is 9 matmuls.

  XLA:CPU computes the kernel gradient of a 3x3 convolution on 32x32x64 maps ~4x slower than the
  equivalent matmuls ``sum_{n,h,w} x_pad[n, h+i, w+j]^T g[n, h, w]``; values are the same.

  Args:
    x: NHWC input.
    kernel: HWIO kernel of spatial size 3x3.

  Returns:
    The NHWC output, same spatial size.

  Example:
    >>> import jax.numpy as jnp
    >>> conv3x3_same(jnp.ones((1, 4, 4, 1)), jnp.ones((3, 3, 1, 2)))[0, 1, 1].tolist()
    [9.0, 9.0]
  """
  return _conv_same(x, kernel)


def _conv3x3_fwd(x, kernel):
  return _conv_same(x, kernel), (x, kernel)


def _conv3x3_bwd(res, g):
  x, kernel = res
  dx = _conv_same(g, jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2))
  h, w, cin = x.shape[1:]
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  g2 = g.reshape(-1, g.shape[-1])
  dk = jnp.stack(
    [jnp.stack([xp[:, i : i + h, j : j + w].reshape(-1, cin).T @ g2 for j in range(3)]) for i in range(3)]
  )
  return dx, dk.astype(kernel.dtype)


conv3x3_same.defvjp(_conv3x3_fwd, _conv3x3_bwd)


class Conv3x3(nn.Module):
  """3x3 'SAME' convolution with an HWIO ``kernel`` (and optional ``bias``), stride 1.

  On feature maps of at most ``patches_below`` pixels a side it computes the convolution as
  image patches times the kernel matrix: the same numbers with the same parameters, but XLA:CPU
  runs 3x3 convolutions on 2x2/4x4 maps ~30x slower than the equivalent matmul. On CPU larger
  maps use :func:`conv3x3_same` (matmul kernel gradient).

  Attributes:
    features: output channels.
    use_bias: add a bias.
    kernel_init: the kernel's initializer (Kaiming normal, fan-in).
    bias_init: the bias's initializer; None: zeros.
    patches_below: largest map side computed as patches times the kernel matrix.
  """

  features: int
  use_bias: bool = True
  kernel_init: Callable[..., Any] = he_normal_fan_in
  bias_init: Callable[..., Any] | None = None  # None: zeros
  patches_below: int = 4

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    cin = x.shape[-1]
    kernel = self.param("kernel", self.kernel_init, (3, 3, cin, self.features))
    if max(x.shape[1:3]) <= self.patches_below:
      # features of the patches are ordered (C, kh, kw): match the kernel to it
      patches = lax.conv_general_dilated_patches(
        x, (3, 3), (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
      )
      y = patches @ jnp.transpose(kernel, (2, 0, 1, 3)).reshape(cin * 9, self.features)
    elif jax.default_backend() == "cpu":
      y = conv3x3_same(x, kernel)
    else:
      y = _conv_same(x, kernel)
    if self.use_bias:
      init = self.bias_init or nn.initializers.zeros
      y = y + self.param("bias", init, (self.features,))
    return y


__all__ = ["Conv3x3", "conv3x3_same", "he_normal_fan_in", "torch_bias_init"]
