"""LeNet-300-100 (fully connected) and LeNet-5 (LeCun et al. 1998; the pruning literature's
MNIST models)."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax


class LeNet300100(nn.Module):
  widths: Sequence[int] = (300, 100)
  num_classes: int = 10

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train
    x = x.reshape(x.shape[0], -1)
    for w in self.widths:
      x = nn.relu(nn.Dense(w)(x))
    return nn.Dense(self.num_classes)(x)


class LeNet5(nn.Module):
  conv_widths: Sequence[int] = (6, 16)
  dense_widths: Sequence[int] = (120, 84)
  num_classes: int = 10

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train
    for w in self.conv_widths:
      x = nn.max_pool(nn.relu(nn.Conv(w, (5, 5), padding="SAME")(x)), (2, 2), (2, 2))
    x = x.reshape(x.shape[0], -1)
    for w in self.dense_widths:
      x = nn.relu(nn.Dense(w)(x))
    return nn.Dense(self.num_classes)(x)
