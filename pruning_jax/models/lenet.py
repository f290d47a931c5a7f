"""LeNet-300-100 (fully connected) and LeNet-5 (LeCun et al. 1998; the pruning literature's
MNIST models)."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from pruning_jax.models.layers import he_normal_fan_in, torch_bias_init


class LeNet300100(nn.Module):
  """LeNet-300-100: a ReLU MLP on the flattened image.

  Attributes:
    widths: hidden widths.
    num_classes: classifier outputs.
    he_normal: Kaiming-normal (fan-in) kernels, the untrained nets of the subnetwork papers
      (ASLP, edge-popup); False (default): Flax's lecun_normal.
    torch_bias: biases U(+-1/sqrt(fan_in)) as PyTorch's ``nn.Linear`` (ASLP keeps them frozen
      and unmasked); False (default): zeros.
  """

  widths: Sequence[int] = (300, 100)
  num_classes: int = 10
  he_normal: bool = False
  torch_bias: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train
    x = x.reshape(x.shape[0], -1)
    kinit = he_normal_fan_in if self.he_normal else nn.initializers.lecun_normal()

    def dense(width, x):
      binit = torch_bias_init(x.shape[-1]) if self.torch_bias else nn.initializers.zeros
      return nn.Dense(width, kernel_init=kinit, bias_init=binit)(x)

    for w in self.widths:
      x = nn.relu(dense(w, x))
    return dense(self.num_classes, x)

  def widths_of(self, params) -> dict:
    """The width fields that build this network with the shapes of ``params`` (a shrunk copy).

    Args:
      params: the ``"params"`` collection.

    Returns:
      ``{"widths": ...}``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> m = LeNet300100(widths=(5, 3))
      >>> m.widths_of(m.init(jax.random.key(0), jnp.ones((1, 4)))["params"])
      {'widths': (5, 3)}
    """
    return {"widths": tuple(int(params[f"Dense_{i}"]["kernel"].shape[-1]) for i in range(len(self.widths)))}


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

  def widths_of(self, params) -> dict:
    """The width fields that build this network with the shapes of ``params`` (a shrunk copy).

    Args:
      params: the ``"params"`` collection.

    Returns:
      ``{"conv_widths": ..., "dense_widths": ...}``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> m = LeNet5()
      >>> m.widths_of(m.init(jax.random.key(0), jnp.ones((1, 28, 28, 1)))["params"])
      {'conv_widths': (6, 16), 'dense_widths': (120, 84)}
    """
    conv = tuple(int(params[f"Conv_{i}"]["kernel"].shape[-1]) for i in range(len(self.conv_widths)))
    dense = tuple(int(params[f"Dense_{i}"]["kernel"].shape[-1]) for i in range(len(self.dense_widths)))
    return {"conv_widths": conv, "dense_widths": dense}


__all__ = ["LeNet300100", "LeNet5"]
