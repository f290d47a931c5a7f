"""LeNet-300-100 (fully connected) and LeNet-5 (LeCun et al. 1998; the pruning literature's
MNIST models)."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax


class LeNet300100(nn.Module):
  """LeNet-300-100: a ReLU MLP on the flattened image.

  Attributes:
    widths: hidden widths.
    num_classes: classifier outputs.
  """

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
  """LeNet-5: two 5x5 conv-ReLU-maxpool stages, then a ReLU MLP.

  Attributes:
    conv_widths: output channels of the two convs.
    dense_widths: hidden widths.
    num_classes: classifier outputs.
  """

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


__all__ = ["LeNet300100", "LeNet5"]
