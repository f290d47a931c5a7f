"""train_and_evaluate(config, workdir): the loop over a run's stages.

A run is a list of stages (e.g. train dense, then prune and fine-tune, or lottery-ticket rounds);
each stage builds its Pruner and optimizers from its config (:mod:`experiments.build`) and the
loop only calls the Pruner's functions: there is no method branch here. Between stages the
previous stage's extracted subnetwork hands over its params, masks and model state: the next
stage's pruner starts from those masks (``InitContext.masks``), and a stage with ``rewind_to``
then replaces the params by those an earlier stage had at a given step (kept positions only),
with fresh optimizer state. A stage may rebuild the model with other widths (its
``model_kwargs`` override the run's); it then starts from that model's fresh initialization
(``reinit``, e.g. training a pruned structure from scratch), since the hand-off no longer fits;
a stage without ``reinit`` must build the model the hand-off fits, or it is a config error.
A stage with ``shrink`` first removes the channels the hand-off's masks zero in every member of
their group (:func:`pruning_jax.surgery.keep_from_masks`), physically: it goes on with the
smaller model (its widths then hold for every later stage, and checkpoints record them), and
with ``reinit`` trains that structure from its own initialization instead.

A stage hands over its last epoch, unless it has ``select_best_if={"metric": m, "at_most" or
"at_least": v}``: then its best-validation epoch among those where the pruner's metric ``m``
(``Pruner.metrics``) meets the bound (Pruning from Scratch's checkpoint rule: at most r of the
gates non-zero); with none, its last epoch, with a warning. The choice is recorded in the
summary's ``stage_selection``. With ``evaluate_stages`` every earlier stage's hand-off is also
evaluated on the test and validation splits (``stage_results``: e.g. each lottery-ticket round).

Resume is exact: a checkpoint holds the stage, the whole TrainState (params, pruner state,
optimizer state, model state, step, PRNG key) and the best-validation record; the data order
of an epoch and each step's augmentation derive from (seed, stage, epoch, step) only.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm import tqdm

import pruning_jax as pj
from experiments import build, evaluators
from experiments import checkpoints as ckpt_lib
from experiments import data as data_lib
from experiments import summary as summary_lib
from pruning_jax import models as models_lib
from pruning_jax import training

_TOP_KEYS = {
  "study": str,
  "method": str,
  "variant": str,
  "model": str,
  "model_kwargs": dict,
  "dataset": str,
  "data_dir": (str, type(None)),
  "npz": (str, type(None)),
  "val_size": int,
  "train_subset": (int, type(None)),
  "augment": bool,
  "batch_size": int,
  "eval_batch_size": int,
  "seed": int,
  "stages": (list, tuple),
  "checkpoint_every_steps": int,
  "log_every_steps": int,
  "select_best": bool,
  "max_steps_this_run": (int, type(None)),
  "eval_finalized": bool,
  "progress": bool,
  "normalization": (list, tuple, type(None)),
  "test_evaluators": (list, tuple),
  "init_from": (str, type(None)),
  "init_batches": int,
  "evaluate_stages": bool,
  "log_macs": bool,
  "select_on": (list, tuple, type(None)),
  "learned_stats": (list, tuple),
}
_STAGE_KEYS = {
  "name": str,
  "epochs": (int, float),
  "pruner": dict,
  "optimizer": dict,
  "mask_optimizer": (dict, type(None)),
  "variable_optimizers": dict,
  "rewind_to": (dict, type(None)),
  "model_kwargs": dict,
  "reinit": bool,
  "shrink": bool,
  "select_best_if": (dict, type(None)),
  "patience": (int, type(None)),
}


def _check_keys(cfg: Any, spec: dict, where: str) -> None:
  for key in cfg.keys() if hasattr(cfg, "keys") else []:
    if key not in spec:
      raise ValueError(f"config key {where}{key!r} is unknown; known keys: {sorted(spec)}.")
    value = cfg[key]
    expected = spec[key]
    if isinstance(value, ml_collections.ConfigDict):
      value = value.to_dict()
    if not isinstance(value, expected):
      names = expected.__name__ if isinstance(expected, type) else "/".join(t.__name__ for t in expected)
      raise ValueError(f"config key {where}{key!r} must be {names}, got {type(value).__name__} {value!r}.")


class Stage(NamedTuple):
  config: Any
  total: int  # optimizer steps
  pruner: pj.Pruner
  tx: Any


def build_stage(stage, i: int, steps_per_epoch: int) -> Stage:
  """A stage's Pruner and optimizer from its config, for ``steps_per_epoch``."""
  total = int(round(stage.epochs * steps_per_epoch))
  where = f"stages[{i}]"
  kw = {"steps_per_epoch": steps_per_epoch, "total_steps": total}
  pruner = build.pruner(stage.pruner, f"{where}.pruner", **kw)
  learned_tx = {"learned": build.optimizer(stage.get("mask_optimizer"), f"{where}.mask_optimizer", **kw)}
  for label, o in stage.get("variable_optimizers", {}).items():
    learned_tx[label] = build.optimizer(dict(o), f"{where}.variable_optimizers.{label}", **kw)
  weights = build.optimizer(stage.optimizer, f"{where}.optimizer", **kw)
  return Stage(stage, total, pruner, training.optimizer(weights, learned_tx, pruner=pruner))


def _check_rewind(config) -> None:
  for i, stage in enumerate(config.stages):
    r = stage.get("rewind_to")
    if r is None:
      continue
    r = dict(r)
    if set(r) != {"stage", "step"} or not all(isinstance(v, int) for v in r.values()):
      raise ValueError(
        f"config key 'stages[{i}].rewind_to'={r!r}: expected {{'stage': <earlier stage index>, 'step': "
        "<step of that stage>}, e.g. {'stage': 0, 'step': 0} for the weights at initialization."
      )
    if not 0 <= r["stage"] < i:
      raise ValueError(
        f"config key 'stages[{i}].rewind_to.stage'={r['stage']}: must be an earlier stage (0..{i - 1})."
      )
    if r["step"] < 0:
      raise ValueError(f"config key 'stages[{i}].rewind_to.step'={r['step']}: must be >= 0.")
    if stage.get("reinit", False):
      raise ValueError(
        f"config stages[{i}]: reinit=True and rewind_to both say where the weights come from. Fix: keep one."
      )
    if any(config.stages[j].get("shrink", False) for j in range(r["stage"] + 1, i + 1)):
      raise ValueError(
        f"config stages[{i}].rewind_to: a stage between stage {r['stage']} and this one shrinks the "
        "model, and a rewind restores weights of the same shapes. Fix: rewind to a stage after the shrink."
      )
    earlier = dict(config.stages[r["stage"]].get("model_kwargs", {}))
    if dict(stage.get("model_kwargs", {})) != earlier:
      raise ValueError(
        f"config stages[{i}].rewind_to: stage {r['stage']} has model_kwargs {earlier}, this stage "
        f"{dict(stage.get('model_kwargs', {}))}; a rewind restores weights of the same shapes. Fix: "
        "rewind to a stage of the same model."
      )


_BOUNDS = {"at_most": lambda v, b: v <= b, "at_least": lambda v, b: v >= b}


def _check_selection_rule(rule, i: int) -> None:
  if rule is None:
    return
  rule = dict(rule)
  bounds = [k for k in rule if k in _BOUNDS]
  ok = (
    set(rule) == {"metric", *bounds}
    and len(bounds) == 1
    and isinstance(rule["metric"], str)
    and isinstance(rule[bounds[0]], (int, float))
    and not isinstance(rule[bounds[0]], bool)
  )
  if not ok:
    raise ValueError(
      f"config key 'stages[{i}].select_best_if'={rule!r}: expected {{'metric': <a metric of the stage's "
      "pruner>, 'at_most' or 'at_least': <number>}, e.g. {'metric': 'gate_nonzero', 'at_most': 0.2}."
    )


def views_of(config) -> list[str]:
  """The views each validation pass evaluates (:data:`experiments.evaluators.VIEWS`); the first
  selects the reported checkpoint and drives early stopping. Without ``select_on``, the one
  ``eval_finalized`` names."""
  on = config.get("select_on")
  if on is None:
    return ["extracted" if config.eval_finalized else "forward"]
  return list(on)


def _check_views(config) -> None:
  on = config.get("select_on")
  if on is None:
    return
  on = list(on)
  if not on or any(v not in evaluators.VIEWS for v in on) or len(set(on)) != len(on):
    raise ValueError(
      f"config key 'select_on'={on!r}: expected distinct views from {sorted(evaluators.VIEWS)}, the first "
      "selecting the reported checkpoint, e.g. ['forward', 'extracted'] (ASLP's reference protocol first, "
      "the extracted subnetwork's second)."
    )
  if len(on) > 1 and not config.select_best:
    raise ValueError(
      f"config key 'select_on'={on!r} names more than one view, each choosing its best-validation "
      "checkpoint, but select_best=False reports the last epoch. Fix: set select_best=True or name one view."
    )


def _check_patience(config) -> None:
  last = len(config.stages) - 1
  for i, stage in enumerate(config.stages):
    p = stage.get("patience")
    if p is None:
      continue
    if isinstance(p, bool) or p < 1:
      raise ValueError(
        f"config key 'stages[{i}].patience'={p!r}: expected a number of epochs >= 1 (None: never stop early)."
      )
    if stage.get("select_best_if") is None and not (i == last and config.select_best):
      raise ValueError(
        f"config key 'stages[{i}].patience'={p}: early stopping counts the epochs since the stage's best "
        "validation epoch, and this stage chooses none (it hands over its last epoch). Fix: set "
        "select_best=True (last stage) or a select_best_if rule, or drop patience."
      )


def _check_learned_stats(thresholds) -> None:
  if any(isinstance(t, bool) or not isinstance(t, (int, float)) or not t >= 0 for t in thresholds):
    raise ValueError(
      f"config key 'learned_stats'={list(thresholds)!r}: expected thresholds >= 0 on |v| of the pruner's "
      "learned variables, e.g. [0.5, 1, 2, 4] (empty: off)."
    )


def _check_metric(rule, names, i: int) -> None:
  if rule["metric"] not in names:
    raise ValueError(
      f"config key 'stages[{i}].select_best_if.metric'={rule['metric']!r}: the stage's pruner reports "
      f"{sorted(names)}. Fix: name one of them."
    )


def _meets(rule, metrics: dict) -> tuple[bool, float]:
  """Whether a stage's pruner metrics meet its ``select_best_if`` rule, and the value."""
  (bound,) = (k for k in rule if k in _BOUNDS)
  value = float(metrics[rule["metric"]])
  return bool(_BOUNDS[bound](value, rule[bound])), value


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the config key for unknown keys, wrong types, unknown names, and
  pruner or optimizer arguments their factories do not take (checked by building every stage)."""
  _check_keys(config, _TOP_KEYS, "")
  if config.model not in models_lib.MODELS:
    raise ValueError(
      f"config key 'model'={config.model!r} is unknown; expected one of {sorted(models_lib.MODELS)}."
    )
  if config.dataset not in data_lib.DATASETS:
    raise ValueError(
      f"config key 'dataset'={config.dataset!r} is unknown; expected one of {data_lib.DATASETS}."
    )
  if not config.stages:
    raise ValueError("config key 'stages' is empty: add at least one stage (see experiments/configs/).")
  for i, stage in enumerate(config.stages):
    _check_keys(stage, _STAGE_KEYS, f"stages[{i}].")
    if stage.get("shrink", False) and i == 0:
      raise ValueError(
        "config key 'stages[0].shrink': the first stage has no pruned hand-off to shrink. Fix: prune in "
        "an earlier stage (e.g. channel_pruning with epochs=0), then shrink."
      )
    if stage.get("shrink", False) and stage.get("model_kwargs"):
      raise ValueError(
        f"config stages[{i}]: shrink sets the model's widths from the hand-off; model_kwargs "
        f"{dict(stage.model_kwargs)} would override them. Fix: drop one."
      )
    _check_selection_rule(stage.get("select_best_if"), i)
    # keys and values, before any data is read (epochs become steps again with the real count)
    build_stage(stage, i, steps_per_epoch=1000)
  _check_rewind(config)
  _check_views(config)
  _check_patience(config)
  _check_learned_stats(config.get("learned_stats", ()))
  if config.batch_size <= 0:
    raise ValueError(f"config key 'batch_size' must be positive, got {config.batch_size}.")


def _batch_fn(ds: data_lib.Dataset, augment: bool):
  @jax.jit
  def get(images, labels, idx, key):
    x = images[idx]
    if augment:
      x = data_lib.augment(key, x)
    return {"image": data_lib.normalize(x, ds.mean, ds.std), "label": labels[idx]}

  return get


class StageModel(NamedTuple):
  """A stage's model: the run's, rebuilt with the stage's ``model_kwargs``, or shrunk."""

  module: Any
  apply_fn: Any
  init_vars: Any
  kwargs: dict  # the model kwargs beyond the run's num_classes


def as_tuples(x):
  """JSON lists back to the tuples the model fields hold."""
  if isinstance(x, list):
    return tuple(as_tuples(v) for v in x)
  if isinstance(x, dict):
    return {k: as_tuples(v) for k, v in x.items()}
  return x


def _stage_kwargs(config, i: int, widths: dict[int, dict]) -> dict:
  """The run's model kwargs, the widths of the latest shrink at or before stage i, its own."""
  kwargs = dict(config.get("model_kwargs", {}))
  shrunk = [j for j in widths if j <= i]
  if shrunk:
    kwargs.update(widths[max(shrunk)])
  return as_tuples({**kwargs, **dict(config.stages[i].get("model_kwargs", {}))})


def _stage_model(config, i: int, num_classes: int, root, example, kwargs: dict) -> StageModel:
  model = models_lib.get_model(config.model, num_classes=num_classes, **kwargs)
  # stage 0 initialises as a run always has; a later stage's own model gets its own key
  key = jax.random.fold_in(root, 0 if i == 0 else 5000 + i)
  return StageModel(model, training.linen_apply(model), model.init(key, example), kwargs)


def _shrink_handoff(h: Handoff, model: StageModel, example, i: int) -> tuple[Handoff, dict]:
  """The hand-off with the channels its masks remove cut out, and the widths it now has."""
  variables = {"params": h.params, **h.model_state}
  fn = lambda v, x: model.module.apply(v, x)  # noqa: E731
  groups = pj.surgery.channel_groups(fn, variables, example)
  masks = h.masks if h.masks is not None else jax.tree.map(lambda p: True, h.params)
  keep = pj.surgery.keep_from_masks(variables, groups, {"params": masks})
  small_module, small = pj.surgery.shrink_module(model.module, variables, groups, keep, example)
  full_masks = jax.tree.map(lambda m, p: jnp.broadcast_to(m, jnp.shape(p)), masks, h.params)
  small_masks = pj.surgery.shrink({**variables, "params": full_masks}, groups, keep)["params"]
  widths = small_module.widths_of(small["params"])
  before = pj.count_flops(fn, variables, example).macs
  after = pj.count_flops(lambda v, x: small_module.apply(v, x), small, example).macs
  removed = sum(int((~k).sum()) for k in keep.values())
  print(
    f"stage {i}: shrink removed {removed} channels, MACs per example {before} -> {after}; widths {widths}",
    file=sys.stderr,
  )
  return Handoff(small["params"], small_masks, {k: v for k, v in small.items() if k != "params"}), widths


def _fresh_handoff(init_vars) -> Handoff:
  return Handoff(init_vars["params"], None, {k: v for k, v in init_vars.items() if k != "params"})


def _check_fits(params, model: StageModel, i: int) -> None:
  """The handed-over params must have the stage model's shapes (same widths, or a shrink that
  built them)."""
  want = jax.tree_util.tree_flatten_with_path(model.init_vars["params"])[0]
  have = jax.tree_util.tree_flatten_with_path(params)[0]
  if [p for p, _ in want] != [p for p, _ in have]:
    raise ValueError(
      f"config stages[{i}]: its model's params are not the ones the previous stage hands over. Fix: "
      f"set stages[{i}].reinit=True to train this model from its own initialization."
    )
  for (path, w), (_, g) in zip(want, have, strict=True):
    if w.shape != g.shape:
      raise ValueError(
        f"config stages[{i}]: the model has {jax.tree_util.keystr(path)} of shape {w.shape}, but the "
        f"previous stage hands over {g.shape}. Fix: set stages[{i}].reinit=True (train this model from "
        f"its own initialization) or give it the previous stage's model_kwargs."
      )


class Handoff(NamedTuple):
  """What one stage hands the next: its extracted params, masks and model state."""

  params: Any
  masks: Any  # None before the first stage
  model_state: Any


def _record(state: training.TrainState, stage: int, val_accuracy: float) -> dict[str, Any]:
  """What the run reports at the end: the best-validation (or last) model of a stage."""
  return {
    "params": state.params,
    "pruner_state": state.pruner_state,
    "model_state": state.model_state,
    "val_accuracy": jnp.asarray(val_accuracy, jnp.float32),
    "stage": jnp.asarray(stage, jnp.int32),
  }


def _stage_result(eval_step, state, params, masks, ds, config, key, name: str) -> dict[str, Any]:
  """What an earlier stage hands over, evaluated (``evaluate_stages``): each lottery round's
  ticket, each prune of a schedule of stages. Its test accuracy is a result of its own, never
  used to choose anything."""
  test = evaluators.evaluate(eval_step, state, ds.test_image, ds.test_label, ds, config.eval_batch_size, key)
  val = evaluators.evaluate(eval_step, state, ds.val_image, ds.val_label, ds, config.eval_batch_size, key)
  prunable = [m for m in jax.tree.leaves(masks) if np.ndim(m) > 0]
  kept, total = pj.count_kept(masks, params=params) if prunable else (0, 1)
  return {
    "name": name,
    "test_accuracy": test["accuracy"],
    "val_accuracy": val["accuracy"],
    "sparsity": 1.0 - int(kept) / int(total) if prunable else 0.0,
    "params_nonzero": pj.count_params(params).nonzero,
  }


def load_dataset(config) -> data_lib.Dataset:
  """The run's data: its dataset, seeded validation split, training subset and normalization."""
  return data_lib.load(
    config.dataset,
    data_dir=config.get("data_dir"),
    npz=config.get("npz"),
    val_size=config.val_size,
    seed=config.seed,
    train_subset=config.get("train_subset"),
    normalization=tuple(map(tuple, config.normalization)) if config.get("normalization") else None,
  )


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs every stage of ``config`` in ``workdir``; returns (and writes) the summary."""
  validate_config(config)
  t0 = time.time()
  commit = summary_lib.git_commit()  # the code this run started from
  os.makedirs(workdir, exist_ok=True)
  ds = load_dataset(config)
  root = jax.random.PRNGKey(config.seed)
  example = jnp.zeros((1, *ds.train_image.shape[1:]), jnp.float32)
  widths: dict[int, dict] = {}  # stage -> the widths its shrink produced
  models: dict[int, StageModel] = {}

  def model_for(i: int) -> StageModel:
    """Stage i's model; a stage that only continues the previous one's shares it."""
    if i not in models:
      stage = config.stages[i]
      kwargs = _stage_kwargs(config, i, widths)
      plain = i > 0 and not stage.get("reinit", False) and not stage.get("model_kwargs")
      if plain and kwargs == model_for(i - 1).kwargs:
        models[i] = model_for(i - 1)
      else:
        models[i] = _stage_model(config, i, ds.num_classes, root, example, kwargs)
    return models[i]

  first_shrink = next((i for i, s in enumerate(config.stages) if s.get("shrink", False)), len(config.stages))
  for i, stage in enumerate(config.stages[:first_shrink]):
    if i > 0 and not stage.get("reinit", False):  # before any training: a bad config loses nothing
      _check_fits(model_for(i - 1).init_vars["params"], model_for(i), i)
  n_train = len(ds.train_label)
  spe = n_train // config.batch_size
  if spe == 0:
    raise ValueError(f"config key 'batch_size'={config.batch_size} exceeds the {n_train} training images.")
  get_batch = _batch_fn(ds, config.augment)
  # the batches a data-dependent pruner scores at init: the first of a fixed, unaugmented order
  context_order = data_lib.epoch_order(jax.random.fold_in(root, 3), n_train, config.batch_size)
  context_batches = [
    _batch_fn(ds, False)(ds.train_image, ds.train_label, context_order[i], root)
    for i in range(min(int(config.get("init_batches", 1)), spe))
  ]
  stages = [build_stage(stage, i, spe) for i, stage in enumerate(config.stages)]
  test_evaluators = [
    build.evaluator(e, f"test_evaluators[{i}]") for i, e in enumerate(config.get("test_evaluators", ()))
  ]
  rewinds = {(s.config.rewind_to.stage, s.config.rewind_to.step) for s in stages if s.config.get("rewind_to")}
  views = views_of(config)
  thresholds = [float(t) for t in config.get("learned_stats", ())]
  learned_stats = (
    jax.jit(lambda learned: pj.accounting.abs_above_fractions(learned, thresholds)) if thresholds else None
  )

  handoff = _fresh_handoff(model_for(0).init_vars)
  if config.get("init_from"):
    params, model_state = ckpt_lib.load_final(config.init_from, handoff.params, handoff.model_state)
    handoff = Handoff(params, None, model_state)

  def fresh_state(si: int, h: Handoff, *, rewind: bool = True) -> training.TrainState:
    st = stages[si]
    if st.config.get("reinit", False):
      h = _fresh_handoff(model_for(si).init_vars)
    key = jax.random.fold_in(root, 1000 + si)
    apply_fn = model_for(si).apply_fn
    context = training.init_context(apply_fn, h.model_state, batches=context_batches, masks=h.masks)
    state = training.init_train_state(key, {"params": h.params, **h.model_state}, st.pruner, st.tx, context)
    r = st.config.get("rewind_to")
    if rewind and r:
      saved = ckpt_lib.load_snapshot(workdir, r.stage, r.step, h.params)
      params = pj.apply_masks(saved, st.pruner.masks(state.params, state.pruner_state))
      state = state._replace(
        params=params, opt_state=st.tx.init({"params": params, "learned": state.pruner_state.learned})
      )
    return state

  def template_for(meta):
    si = meta["stage"]
    for j, w in meta.get("widths", {}).items():  # a shrunk model is rebuilt from its widths
      widths[int(j)] = as_tuples(w)
    models.clear()
    # shapes only: those of the stage's own model (a stage may rebuild it with other widths)
    init_vars = model_for(si).init_vars
    shapes = jax.eval_shape(lambda: fresh_state(si, _fresh_handoff(init_vars), rewind=False))
    record = jax.eval_shape(lambda: _record(shapes, si, 0.0))
    return {
      "train": shapes,
      "best": record,
      **({"also": {v: record for v in views[1:]}} if views[1:] else {}),
    }

  ckpt = ckpt_lib.Checkpoints(os.path.join(workdir, "checkpoints"))
  metrics_file = open(os.path.join(workdir, "metrics.jsonl"), "a")  # noqa: SIM115 - closed in finally

  def log(record: dict) -> None:
    metrics_file.write(json.dumps(record) + "\n")
    metrics_file.flush()

  try:
    restored = ckpt.restore(template_for)
    start_stage, state, best, also = 0, None, None, None
    selections: dict[str, dict] = {}  # stage -> the epoch its select_best_if rule chose
    stage_results: dict[str, dict] = {}  # stage -> its hand-off's test and val accuracy
    stopped: dict[str, dict] = {}  # stage -> where its patience ran out
    best_epochs: dict[str, float] = {}  # view -> the epoch of its best record, this stage
    if restored is not None:
      meta, saved = restored
      start_stage, state, best, also = meta["stage"], saved["train"], saved["best"], saved.get("also")
      selections = meta.get("selections", {})
      stage_results = meta.get("stage_results", {})
      stopped = meta.get("stopped", {})
      best_epochs = meta.get("best_epochs", {})
      print(
        f"resuming from stage {start_stage} step {int(state.step)} ({workdir}/checkpoints)", file=sys.stderr
      )
    steps_this_run = 0
    global_offset = sum(stages[i].total for i in range(start_stage))
    last_good = None
    eval_key = jax.random.fold_in(root, 7)
    train_acc = float("nan")
    for si in range(start_stage, len(stages)):
      st = stages[si]
      stage, total, pruner = st.config, st.total, st.pruner
      if state is None:
        if stage.get("shrink", False):
          handoff, widths[si] = _shrink_handoff(handoff, model_for(si - 1), example, si)
        if si >= first_shrink and not stage.get("reinit", False):
          _check_fits(handoff.params, model_for(si), si)
        state = fresh_state(si, handoff)
      if best is None:
        best = _record(state, si, -1.0)
        also = {v: best for v in views[1:]}
        best_epochs = {}
      patience = stage.get("patience")
      apply_fn = model_for(si).apply_fn
      rule = dict(stage.select_best_if) if stage.get("select_best_if") else None
      if rule is not None:
        _check_metric(rule, jax.eval_shape(pruner.metrics, state.params, state.pruner_state), si)
        stage_metrics = jax.jit(pruner.metrics)
      train_step = training.train_step_for(apply_fn, pruner, st.tx)
      masks_macs = None
      if config.get("log_macs", True):  # forward MACs per example of the masks the next step trains with
        weight_macs = pj.accounting.macs_per_weight(
          lambda p, x, fn=apply_fn, ms=state.model_state: fn(p, ms, x, train=False)[0], state.params, example
        )
        masks_macs = jax.jit(
          lambda s, wm=weight_macs, pr=pruner: pj.accounting.effective_macs(
            pr.masks(s.params, s.pruner_state), wm
          )
        )
      eval_steps = {v: evaluators.VIEWS[v](apply_fn, pruner) for v in views}
      eval_step = eval_steps[views[0]]
      eval_sparsity = jax.jit(
        functools.partial(training.evaluated_sparsity, pruner, finalized=views[0] == "extracted")
      )
      data_key = jax.random.fold_in(root, 2000 + si)
      bar = tqdm(
        total=total,
        initial=int(state.step),
        desc=f"{stage.name}",
        disable=not config.progress,
        dynamic_ncols=True,
      )
      step = int(state.step)

      def snapshot(si: int, step: int, state) -> None:
        if (si, step) in rewinds and not os.path.isdir(ckpt_lib.snapshot_path(workdir, si, step)):
          ckpt_lib.save_snapshot(workdir, si, step, state.params)

      snapshot(si, step, state)
      while step < total and str(si) not in stopped:
        epoch, i0 = divmod(step, spe)
        order = data_lib.epoch_order(jax.random.fold_in(data_key, epoch), n_train, config.batch_size)
        for i in range(i0, spe):
          if step >= total:
            break
          batch = get_batch(
            ds.train_image, ds.train_label, order[i], jax.random.fold_in(data_key, 10**6 + step)
          )
          state, metrics = train_step(state, batch, step)
          step += 1
          steps_this_run += 1
          bar.update(1)
          snapshot(si, step, state)
          boundary = step % config.log_every_steps == 0 or step == total
          ckpt_due = step % config.checkpoint_every_steps == 0 or step == total
          interrupted = config.max_steps_this_run is not None and steps_this_run >= config.max_steps_this_run
          if boundary or ckpt_due or interrupted:
            m = {k: float(v) for k, v in metrics.items()}
            if masks_macs is not None:
              m["macs"] = float(masks_macs(state))
            if not math.isfinite(m["loss"]):
              raise FloatingPointError(
                f"loss is {m['loss']} at stage {si} ({stage.name}) step {step}. The run stopped; the "
                f"last good checkpoint is {last_good if last_good is not None else 'none (none yet)'} "
                f"in {workdir}/checkpoints. Fix: lower the learning rate or check the data, then rerun "
                "to resume."
              )
            train_acc = m["accuracy"]
            bar.set_postfix(
              loss=f"{m['loss']:.3f}", acc=f"{m['accuracy']:.3f}", sparsity=f"{m['sparsity']:.3f}"
            )
            log({"split": "train", "stage": si, "step": step, "global_step": global_offset + step, **m})
          if step % spe == 0 or step == total:
            epoch_now = step / spe
            vals = {
              v: evaluators.evaluate(
                eval_steps[v], state, ds.val_image, ds.val_label, ds, config.eval_batch_size, eval_key
              )
              for v in views
            }
            val = vals[views[0]]
            record = {
              "split": "val",
              "stage": si,
              "step": step,
              "epoch": epoch_now,
              "global_step": global_offset + step,
              **val,
              **({f"{v}_{k}": x for v, r in vals.items() for k, x in r.items()} if views[1:] else {}),
              "sparsity": float(eval_sparsity(state)),  # of the network the accuracy is of
            }
            if learned_stats is not None:
              record["learned_abs_above"] = {
                path: [float(x) for x in f] for path, f in learned_stats(state.pruner_state.learned).items()
              }
            improved = val["accuracy"] > float(best["val_accuracy"])
            if rule is not None:  # the best epoch among those meeting the rule
              met, value = _meets(rule, stage_metrics(state.params, state.pruner_state))
              record[rule["metric"]] = value
              improved = improved and met
              if improved:
                best = _record(state, si, val["accuracy"])
                selections[str(si)] = {
                  "epoch": epoch_now,
                  "val_accuracy": val["accuracy"],
                  rule["metric"]: value,
                  "rule_met": True,
                }
            elif improved or not config.select_best:
              best = _record(state, si, max(val["accuracy"], float(best["val_accuracy"])))
            if improved:
              best_epochs[views[0]] = epoch_now
            for v in views[1:]:  # the checkpoint each further view would select
              if vals[v]["accuracy"] > float(also[v]["val_accuracy"]):
                also[v] = _record(state, si, vals[v]["accuracy"])
                best_epochs[v] = epoch_now
            log(record)
            since = epoch_now - best_epochs.get(views[0], 0.0)
            if patience is not None and since >= patience:
              stopped[str(si)] = {"epoch": epoch_now, "step": step, "best_epoch": best_epochs.get(views[0])}
              print(
                f"stage {si} ({stage.name}): no better {views[0]} validation accuracy in {patience} epochs; "
                f"stopped at epoch {epoch_now:g} (best at epoch {best_epochs.get(views[0])})",
                file=sys.stderr,
              )
          if ckpt_due or interrupted or str(si) in stopped:
            meta = {
              "stage": si,
              "widths": {str(j): w for j, w in widths.items() if j <= si},
              "selections": selections,
              "stage_results": stage_results,
              "stopped": stopped,
              "best_epochs": best_epochs,
            }
            saved = {"train": state, "best": best, **({"also": also} if also else {})}
            ckpt.save(global_offset + step, saved, meta)
            last_good = global_offset + step
          if interrupted:
            return {"interrupted": True, "stage": si, "step": step}
          if str(si) in stopped:
            break
      bar.close()
      src = state
      if rule is not None:
        if str(si) not in selections:  # as the reference: no epoch met the rule, so the last one
          v = evaluators.evaluate(
            eval_step, state, ds.val_image, ds.val_label, ds, config.eval_batch_size, eval_key
          )
          met, value = _meets(rule, stage_metrics(state.params, state.pruner_state))
          best = _record(state, si, v["accuracy"])
          selections[str(si)] = {
            "epoch": total / spe,
            "val_accuracy": v["accuracy"],
            rule["metric"]: value,
            "rule_met": met,
          }
          print(
            f"warning: stage {si} ({stage.name}): no epoch met select_best_if {rule} ({rule['metric']} "
            f"ended at {value:.4f}); its last epoch is the one selected (recorded in summary.json).",
            file=sys.stderr,
          )
        src = state._replace(
          params=best["params"], pruner_state=best["pruner_state"], model_state=best["model_state"]
        )
      params, masks = pruner.finalize(src.params, src.pruner_state)
      handoff = Handoff(params, masks, src.model_state)
      if config.get("evaluate_stages") and si + 1 < len(stages) and str(si) not in stage_results:
        stage_results[str(si)] = _stage_result(
          evaluators.extracted_step(apply_fn, pruner), src, params, masks, ds, config, eval_key, stage.name
        )
      global_offset += total
      if si + 1 < len(stages):
        state, best, also = None, None, None

    # the reported model: the best-validation one of the last stage, or the last one
    last = len(stages) - 1
    pruner, apply_fn = stages[-1].pruner, model_for(last).apply_fn
    final = state._replace(
      params=best["params"], pruner_state=best["pruner_state"], model_state=best["model_state"]
    )
    eval_step_x = evaluators.extracted_step(apply_fn, pruner)
    test = evaluators.evaluate(
      eval_step_x, final, ds.test_image, ds.test_label, ds, config.eval_batch_size, eval_key
    )
    val = evaluators.evaluate(
      eval_step_x, final, ds.val_image, ds.val_label, ds, config.eval_batch_size, eval_key
    )

    def extra_tests(st) -> dict[str, Any]:
      split = evaluators.Split(
        apply_fn, pruner, st, ds.test_image, ds.test_label, ds, config.eval_batch_size, eval_key
      )
      return {k: v for e in test_evaluators for k, v in e(split).items()}

    test.update(extra_tests(final))
    protocols = {}
    if views[1:]:  # each view's own choice of checkpoint, tested the same way
      for v in views:
        rec = best if v == views[0] else also[v]
        st_v = state._replace(
          params=rec["params"], pruner_state=rec["pruner_state"], model_state=rec["model_state"]
        )
        t = (
          test
          if v == views[0]
          else {
            **evaluators.evaluate(
              eval_step_x, st_v, ds.test_image, ds.test_label, ds, config.eval_batch_size, eval_key
            ),
            **extra_tests(st_v),
          }
        )
        protocols[v] = {
          "epoch": best_epochs.get(v),
          "val_accuracy": float(rec["val_accuracy"]),
          "test_accuracy": t["accuracy"],
          **{k: x for k, x in t.items() if k.startswith("test_")},
          "sparsity": float(training.evaluated_sparsity(pruner, st_v, finalized=True)),
        }
    steps_run = sum(
      int(stopped[str(i)]["step"]) if str(i) in stopped else s.total for i, s in enumerate(stages)
    )
    params, masks = pruner.finalize(final.params, final.pruner_state)
    ckpt_lib.save_final(workdir, params, final.model_state)
    ckpt_lib.save_state(workdir, final.params, final.pruner_state)
    return summary_lib.write_summary(
      config,
      workdir,
      params,
      masks,
      final.model_state,
      apply_fn,
      example,
      test,
      val,
      float(best["val_accuracy"]),
      train_acc,
      steps_run,
      time.time() - t0,
      commit,
      model_for(last).kwargs,
      {
        **({"stage_selection": selections} if selections else {}),
        **({"stage_results": stage_results} if stage_results else {}),
        **({"protocols": protocols} if protocols else {}),
        **({"early_stopping": stopped, "epochs_run": steps_run / spe} if stopped else {}),
      },
    )
  finally:
    # also on a NaN loss or an error: the metrics written so far and the checkpoints stay readable
    ckpt.close()
    metrics_file.close()
