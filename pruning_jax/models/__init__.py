"""Flax linen models used by the papers; every width is configurable (structured pruning builds
narrower copies from them). All take ``(x, train=False)`` with NHWC inputs."""

from pruning_jax.models.conv import ConvNet, conv2, conv4, conv6
from pruning_jax.models.layers import Conv3x3, torch_bias_init
from pruning_jax.models.lenet import LeNet5, LeNet300100
from pruning_jax.models.resnet import CifarResNet, WideResNet, resnet18, resnet20, resnet56, wrn22_2
from pruning_jax.models.vgg import VGG, vgg11, vgg16, vgg19

MODELS = {
  "conv2": conv2,
  "conv4": conv4,
  "conv6": conv6,
  "vgg11": vgg11,
  "vgg16": vgg16,
  "vgg19": vgg19,
  "resnet18": resnet18,
  "resnet20": resnet20,
  "resnet56": resnet56,
  "wrn22_2": wrn22_2,
  "lenet300100": LeNet300100,
  "lenet5": LeNet5,
}


def get_model(name: str, **kwargs):
  """A model by name (``MODELS``) with keyword overrides (e.g. ``num_classes``, widths).

  Args:
    name: a key of ``MODELS``.
    **kwargs: the constructor's overrides.

  Returns:
    The Flax module.

  Raises:
    ValueError: an unknown name.

  Example:
    >>> get_model("lenet300100", widths=(30, 10)).widths
    (30, 10)
  """
  if name not in MODELS:
    raise ValueError(f"Unknown model {name!r}; expected one of {sorted(MODELS)}.")
  return MODELS[name](**kwargs)


__all__ = [
  "MODELS",
  "VGG",
  "WideResNet",
  "CifarResNet",
  "Conv3x3",
  "ConvNet",
  "LeNet300100",
  "LeNet5",
  "conv2",
  "conv4",
  "conv6",
  "get_model",
  "resnet18",
  "resnet20",
  "resnet56",
  "torch_bias_init",
  "vgg11",
  "vgg16",
  "vgg19",
  "wrn22_2",
]
