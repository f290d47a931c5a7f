"""Config -> Pruner, optimizer and schedule, bound by the factories' own signatures.

A pruner config is ``{"name": <factory in pruning_jax.methods>, **its keyword arguments}``; an
optimizer config is ``{"name": <factory in experiments.optimizers>, **its arguments}``. There is
no table of methods or of accepted keys: a key is valid when the factory's signature has it,
and an unknown key is reported with the factory's accepted arguments. Adding a method touches
its own module and its config only.

Three value conventions make configs readable in epochs and plain data:

* a dict with a ``"schedule"`` key, e.g. ``{"schedule": "polynomial", "final_sparsity": 0.9,
  "begin_epoch": 0.1, "end_epoch": 0.7, "frequency": 50}``, is built by that factory of
  :mod:`pruning_jax.schedules` (sparsities) the same way;
* an argument whose name contains ``step`` may be given with ``epoch`` in its place (``at_epoch``
  for ``at_step``, ``epochs_per_round`` for ``steps_per_round``), in epochs;
* ``selection`` may be a regex, a list of regexes or a dict of :func:`pruning_jax.select`
  arguments (``{"include": ..., "exclude": ...}``).

Factories may ask for the stage's ``total_steps`` and ``steps_per_epoch`` by naming them as
keyword-only parameters; they are supplied, never configured.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

import ml_collections

import pruning_jax as pj
from experiments import optimizers

INJECTED = ("total_steps", "steps_per_epoch")


def _plain(value: Any) -> Any:
  if isinstance(value, ml_collections.ConfigDict):
    return value.to_dict()
  if isinstance(value, ml_collections.FieldReference):
    return value.get()
  return value


def _step_name(name: str, params: Mapping[str, inspect.Parameter]) -> str | None:
  """The step-valued parameter an epoch-valued config key stands for, if any."""
  if "epoch" not in name:
    return None
  for candidate in (name.replace("epochs", "steps"), name.replace("epoch", "step")):
    if candidate in params:
      return candidate
  return None


def call(
  factory: Callable[..., Any], cfg: Mapping[str, Any], where: str, *, steps_per_epoch: int, total_steps: int
) -> Any:
  """``factory(**cfg)`` with the conventions of this module.

  Args:
    factory: the function to call.
    cfg: its arguments (the config's ``name`` key already removed).
    where: the config path, for messages (e.g. ``"stages[1].pruner"``).
    steps_per_epoch: optimizer steps per epoch of the stage.
    total_steps: optimizer steps of the stage.

  Returns:
    What the factory returns.

  Raises:
    ValueError: a key the factory does not take (the message lists those it does), a
      required argument missing, or a value the factory rejects (its message, prefixed with
      the config path).

  Example:
    >>> s = call(pj.schedules.one_shot, {"sparsity": 0.9, "at_epoch": 2}, "x", steps_per_epoch=10,
    ...          total_steps=100)
    >>> [round(s(t).item(), 6) for t in (19, 20)]
    [0.0, 0.9]
  """
  sig = inspect.signature(factory)
  params = sig.parameters
  accepts_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
  kwargs: dict[str, Any] = {}
  for key, value in cfg.items():
    value = _plain(value)
    target = key
    if key not in params and not accepts_kwargs:
      target = _step_name(key, params)
      if target is None:
        accepted = sorted(
          k for k, p in params.items() if k not in INJECTED and p.kind is not p.VAR_POSITIONAL
        )
        raise ValueError(
          f"config key {where}.{key} is not an argument of {factory.__module__}.{factory.__name__}; it "
          f"takes {accepted} (arguments with 'step' in their name may be given in epochs, e.g. at_epoch)."
        )
      if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(
          f"config key {where}.{key} must be a number of epochs (it stands for {target}), got "
          f"{type(value).__name__} {value!r}."
        )
      value = int(round(float(value) * steps_per_epoch))
    kwargs[target] = convert(
      target, value, f"{where}.{key}", steps_per_epoch=steps_per_epoch, total_steps=total_steps
    )
  for name in INJECTED:
    if name in params:
      kwargs[name] = {"total_steps": total_steps, "steps_per_epoch": steps_per_epoch}[name]
  missing = [
    k
    for k, p in params.items()
    if p.default is p.empty and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and k not in kwargs
  ]
  if missing:
    raise ValueError(
      f"config {where}: {factory.__name__} needs {missing}; add them under {where} "
      f"(e.g. {where}.{missing[0]}=...)."
    )
  try:
    return factory(**kwargs)
  except (TypeError, ValueError) as e:
    raise ValueError(f"config {where}: {e}") from e


def convert(name: str, value: Any, where: str, *, steps_per_epoch: int, total_steps: int) -> Any:
  """A config value as the factory argument it stands for (schedules and selections built)."""
  if isinstance(value, Mapping) and "schedule" in value:
    rest = {k: v for k, v in value.items() if k != "schedule"}
    return call(
      _member(pj.schedules, value["schedule"], f"{where}.schedule"),
      rest,
      where,
      steps_per_epoch=steps_per_epoch,
      total_steps=total_steps,
    )
  if name == "selection" and isinstance(value, Mapping):
    spec = dict(value)
    return lambda params: pj.select(params, **spec)
  if isinstance(value, list):
    return tuple(value)
  return value


def _member(module: ModuleType, name: Any, where: str) -> Callable[..., Any]:
  public = getattr(module, "__all__", None) or [k for k in vars(module) if not k.startswith("_")]
  fn = getattr(module, str(name), None) if str(name) in public else None
  if not callable(fn):
    choices = sorted(
      k for k in public if callable(getattr(module, k, None)) and not isinstance(getattr(module, k), type)
    )
    raise ValueError(f"config key {where}={name!r} is unknown; expected one of {choices}.")
  return fn


def pruner(cfg: Mapping[str, Any], where: str, *, steps_per_epoch: int, total_steps: int) -> pj.Pruner:
  """The Pruner of a stage's ``pruner`` config: ``pruning_jax.methods.<name>(**rest)``.

  Args:
    cfg: ``{"name": factory, **arguments}``.
    where: the config path.
    steps_per_epoch: steps per epoch of the stage.
    total_steps: steps of the stage.

  Returns:
    The Pruner.

  Raises:
    ValueError: an unknown name or key (see :func:`call`).

  Example:
    >>> p = pruner({"name": "magnitude_pruning", "sparsity": 0.5}, "pruner", steps_per_epoch=1,
    ...            total_steps=1)
    >>> isinstance(p, pj.Pruner)
    True
  """
  cfg = dict(_plain(cfg))
  factory = _member(pj.methods, cfg.pop("name", None), f"{where}.name")
  return call(factory, cfg, where, steps_per_epoch=steps_per_epoch, total_steps=total_steps)


def optimizer(cfg: Mapping[str, Any] | None, where: str, *, steps_per_epoch: int, total_steps: int):
  """The optax transform of an optimizer config: ``experiments.optimizers.<name>(**rest)``;
  None or ``{"name": "frozen"}`` freezes.

  Args:
    cfg: ``{"name": factory, **arguments}`` or None.
    where: the config path.
    steps_per_epoch: steps per epoch of the stage.
    total_steps: steps of the stage.

  Returns:
    An ``optax.GradientTransformation``.

  Example:
    >>> tx = optimizer({"name": "sgd", "lr": 0.1}, "optimizer", steps_per_epoch=1, total_steps=1)
  """
  if cfg is None:
    return optimizers.frozen()
  cfg = dict(_plain(cfg))
  factory = _member(optimizers, cfg.pop("name", "frozen"), f"{where}.name")
  return call(factory, cfg, where, steps_per_epoch=steps_per_epoch, total_steps=total_steps)


def evaluator(cfg: Any, where: str):
  """A test evaluator from a ``test_evaluators`` entry: a name or ``{"name": factory, **args}``
  of :mod:`experiments.evaluators`.

  Args:
    cfg: the entry.
    where: the config path.

  Returns:
    An :data:`experiments.evaluators.Evaluator`.

  Raises:
    ValueError: an unknown name or key (see :func:`call`).

  Example:
    >>> callable(evaluator({"name": "forward", "passes": 3}, "test_evaluators[0]"))
    True
  """
  from experiments import evaluators

  cfg = {"name": cfg} if isinstance(cfg, str) else dict(_plain(cfg))
  factory = _member(evaluators, cfg.pop("name", None), f"{where}.name")
  return call(factory, cfg, where, steps_per_epoch=1, total_steps=0)
