"""The optimizers a config may name (``{"name": "sgd", "lr": 0.1, ...}``), with their learning-rate
schedules over the stage; each factory's signature is the set of keys its config accepts."""

from __future__ import annotations

from collections.abc import Sequence

import optax

LR_SCHEDULES = ("constant", "cosine", "multistep")


def learning_rate(lr: float, lr_schedule: str, milestones: Sequence[float], total_steps: int):
  """``lr`` held (``"constant"``), cosine-decayed to 0 over the stage (``"cosine"``), or divided
  by 10 at each fraction of the stage in ``milestones`` (``"multistep"``)."""
  if lr_schedule == "constant":
    return lr
  if lr_schedule == "cosine":
    return optax.cosine_decay_schedule(lr, max(total_steps, 1))
  if lr_schedule == "multistep":
    return optax.piecewise_constant_schedule(lr, {int(f * total_steps): 0.1 for f in milestones})
  raise ValueError(f"lr_schedule={lr_schedule!r} is unknown; expected one of {LR_SCHEDULES}.")


def frozen() -> optax.GradientTransformation:
  """No update at all (the frozen weights of supermask, edge-popup and ASLP)."""
  return optax.set_to_zero()


def sgd(
  lr: float,
  momentum: float = 0.0,
  nesterov: bool = False,
  weight_decay: float = 0.0,
  lr_schedule: str = "constant",
  milestones: Sequence[float] = (0.5, 0.75),
  *,
  total_steps: int,
) -> optax.GradientTransformation:
  """SGD with coupled (PyTorch-style) weight decay: ``g + weight_decay * w`` before momentum."""
  opt = optax.sgd(
    learning_rate(lr, lr_schedule, milestones, total_steps), momentum=momentum or None, nesterov=nesterov
  )
  return optax.chain(optax.add_decayed_weights(weight_decay), opt) if weight_decay else opt


def adam(
  lr: float,
  weight_decay: float = 0.0,
  lr_schedule: str = "constant",
  milestones: Sequence[float] = (0.5, 0.75),
  *,
  total_steps: int,
) -> optax.GradientTransformation:
  """Adam with coupled (L2) weight decay."""
  opt = optax.adam(learning_rate(lr, lr_schedule, milestones, total_steps))
  return optax.chain(optax.add_decayed_weights(weight_decay), opt) if weight_decay else opt


def adamw(
  lr: float,
  weight_decay: float = 1e-4,
  lr_schedule: str = "constant",
  milestones: Sequence[float] = (0.5, 0.75),
  *,
  total_steps: int,
) -> optax.GradientTransformation:
  """AdamW (decoupled weight decay)."""
  return optax.adamw(learning_rate(lr, lr_schedule, milestones, total_steps), weight_decay=weight_decay)


__all__ = ["adam", "adamw", "frozen", "sgd"]
