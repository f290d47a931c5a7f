"""train_and_evaluate(config, workdir): the training loop, evaluation, orbax checkpoint/resume,
JSONL metrics, progress bar and summary.json.

A run is a list of stages (e.g. train dense, then prune and fine-tune); each stage builds its
Pruner and optimizer from its config through the registries below, and the loop only calls
the Pruner's functions: there is no method branch here. Between stages the previous stage's
extracted subnetwork (``Pruner.finalize``) becomes the next stage's starting params.

Resume is exact: a checkpoint holds the stage, the whole TrainState (params, pruner state,
optimizer state, model state, step, PRNG key) and the best-validation record; the data order
of an epoch and each step's augmentation derive from (seed, stage, epoch, step) only.
"""

from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from tqdm import tqdm

import pruning_jax as pj
from experiments import data as data_lib
from pruning_jax import models as models_lib
from pruning_jax import training

# ---------------------------------------------------------------------------- config registries


def _schedule(p: ml_collections.ConfigDict, steps_per_epoch: int, total: int):
  kind = p.get("schedule", "constant")
  s = float(p.sparsity)
  if kind == "constant":
    return s
  if kind == "one_shot":
    return pj.schedules.one_shot(s, at_step=int(p.get("at_epoch", 0) * steps_per_epoch))
  if kind == "polynomial":
    begin = int(p.get("begin_epoch", 0) * steps_per_epoch)
    end = int(p.get("end_epoch", total / steps_per_epoch) * steps_per_epoch)
    return pj.schedules.polynomial(s, begin, max(end, begin + 1), frequency=int(p.get("frequency", 100)))
  if kind == "iterative":
    rounds = int(p.rounds)
    return pj.schedules.iterative(s, rounds, max(1, total // rounds))
  raise ValueError(
    f"config pruner.schedule={kind!r} is unknown; expected constant, one_shot, polynomial or iterative."
  )


def _selection(p: ml_collections.ConfigDict):
  include, exclude = p.get("include", None), p.get("exclude", None)
  if include is None and exclude is None:
    return None
  return lambda params: pj.select(params, include=include, exclude=exclude)


PRUNERS: dict[str, Callable[[ml_collections.ConfigDict, int, int], pj.Pruner]] = {
  "dense": lambda p, spe, total: pj.methods.dense(selection=_selection(p)),
  "magnitude": lambda p, spe, total: pj.methods.magnitude(
    _schedule(p, spe, total),
    final_sparsity=float(p.sparsity),
    structure=p.get("structure", "unstructured"),
    distribution=p.get("distribution", "global"),
    selection=_selection(p),
  ),
  "aslp": lambda p, spe, total: pj.methods.aslp(
    temperature=float(p.get("temperature", 1.0)),
    smart_rescale=bool(p.get("smart_rescale", False)),
    signed_constant=bool(p.get("signed_constant", False)),
    selection=_selection(p),
  ),
  "supermask": lambda p, spe, total: pj.methods.supermask(
    dynamic_rescale=bool(p.get("dynamic_rescale", False)),
    signed_constant=bool(p.get("signed_constant", False)),
    selection=_selection(p),
  ),
  "reparam": lambda p, spe, total: pj.methods.reparam(
    float(p.sparsity),
    budget_weight=float(p.budget_weight),
    t_init=float(p.get("t_init", 100.0)),
    n=int(p.get("n", 4)),
    per_layer_t=bool(p.get("per_layer_t", True)),
    selection=_selection(p),
  ),
  "edge_popup": lambda p, spe, total: pj.methods.edge_popup(
    float(p.get("keep_fraction", 0.5)),
    signed_constant=p.get("signed_constant", None),
    scale_fan=bool(p.get("scale_fan", False)),
    selection=_selection(p),
  ),
}


_SELECTION_KEYS = {"name", "include", "exclude"}
PRUNER_KEYS: dict[str, set[str]] = {
  "dense": _SELECTION_KEYS,
  "magnitude": _SELECTION_KEYS
  | {"sparsity", "schedule", "at_epoch", "begin_epoch", "end_epoch", "frequency", "rounds"}
  | {"structure", "distribution"},
  "aslp": _SELECTION_KEYS | {"temperature", "smart_rescale", "signed_constant"},
  "supermask": _SELECTION_KEYS | {"dynamic_rescale", "signed_constant"},
  "edge_popup": _SELECTION_KEYS | {"keep_fraction", "signed_constant", "scale_fan"},
  "reparam": _SELECTION_KEYS | {"sparsity", "budget_weight", "t_init", "n", "per_layer_t"},
}


OPTIMIZER_KEYS = {"name", "lr", "momentum", "nesterov", "weight_decay", "lr_schedule", "milestones"}


def _learning_rate(o: ml_collections.ConfigDict, total: int):
  kind, lr = o.get("lr_schedule", "constant"), float(o.lr)
  if kind == "constant":
    return lr
  if kind == "cosine":
    return optax.cosine_decay_schedule(lr, max(total, 1))
  if kind == "multistep":
    bounds = {int(f * total): 0.1 for f in o.get("milestones", (0.5, 0.75))}
    return optax.piecewise_constant_schedule(lr, bounds)
  raise ValueError(
    f"config optimizer.lr_schedule={kind!r} is unknown; expected constant, cosine or multistep."
  )


def _transform(o: ml_collections.ConfigDict | None, total: int) -> optax.GradientTransformation:
  if o is None or o.get("name", "frozen") == "frozen":
    return optax.set_to_zero()
  lr = _learning_rate(o, total)
  wd = float(o.get("weight_decay", 0.0))
  name = o.name
  if name == "sgd":
    opt = optax.sgd(lr, momentum=o.get("momentum", 0.0) or None, nesterov=bool(o.get("nesterov", False)))
  elif name == "adam":
    opt = optax.adam(lr)
  elif name == "adamw":
    return optax.adamw(lr, weight_decay=wd)
  else:
    raise ValueError(f"config optimizer.name={name!r} is unknown; expected sgd, adam, adamw or frozen.")
  # coupled (PyTorch-style) weight decay
  return optax.chain(optax.add_decayed_weights(wd), opt) if wd else opt


# ---------------------------------------------------------------------------- config validation

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
  "sampled_test_passes": int,
  "init_from": (str, type(None)),
}
_STAGE_KEYS = {
  "name": str,
  "epochs": (int, float),
  "pruner": dict,
  "optimizer": dict,
  "mask_optimizer": (dict, type(None)),
  "variable_optimizers": dict,
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


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the config key for unknown keys, wrong types, unknown names."""
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
    name = stage.pruner.get("name")
    if name not in PRUNERS:
      raise ValueError(
        f"config key 'stages[{i}].pruner.name'={name!r} is unknown; expected one of {sorted(PRUNERS)}."
      )
    optimizers = {"optimizer": stage.get("optimizer"), "mask_optimizer": stage.get("mask_optimizer")}
    optimizers.update(
      {f"variable_optimizers.{k}": v for k, v in stage.get("variable_optimizers", {}).items()}
    )
    for where, o in optimizers.items():
      bad = sorted(set(o.keys()) - OPTIMIZER_KEYS) if o is not None else []
      if bad:
        raise ValueError(
          f"config key 'stages[{i}].{where}.{bad[0]}' is unknown; optimizer options are "
          f"{sorted(OPTIMIZER_KEYS)}."
        )
    unknown = sorted(set(stage.pruner.keys()) - PRUNER_KEYS[name])
    if unknown:
      raise ValueError(
        f"config key 'stages[{i}].pruner.{unknown[0]}' is not an option of the {name!r} pruner; its options "
        f"are {sorted(PRUNER_KEYS[name])}."
      )
  if config.batch_size <= 0:
    raise ValueError(f"config key 'batch_size' must be positive, got {config.batch_size}.")


# ---------------------------------------------------------------------------- helpers


def _git_commit() -> str:
  try:
    return subprocess.run(
      ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return "unknown"


def _batch_fn(ds: data_lib.Dataset, augment: bool):
  @jax.jit
  def get(images, labels, idx, key):
    x = images[idx]
    if augment:
      x = data_lib.augment(key, x)
    return {"image": data_lib.normalize(x, ds.mean, ds.std), "label": labels[idx]}

  return get


def _evaluate(eval_step, state, images, labels, ds, batch_size, key) -> dict[str, float]:
  totals = {"loss_sum": 0.0, "correct": 0, "count": 0}
  get = _eval_batch_fn(ds)
  for i, (idx, valid) in enumerate(data_lib.eval_batches(len(labels), batch_size)):
    batch = get(images, labels, jnp.asarray(idx))
    batch["valid"] = jnp.asarray(valid)
    out = eval_step(state, batch, jax.random.fold_in(key, i))
    for k in totals:
      totals[k] += float(out[k])
  return {"loss": totals["loss_sum"] / totals["count"], "accuracy": totals["correct"] / totals["count"]}


_EVAL_GET: dict = {}


def _eval_batch_fn(ds):
  if ds.name not in _EVAL_GET:
    _EVAL_GET[ds.name] = jax.jit(
      lambda images, labels, idx: {
        "image": data_lib.normalize(images[idx], ds.mean, ds.std),
        "label": labels[idx],
      }
    )
  return _EVAL_GET[ds.name]


class _Checkpoints:
  """Orbax manager: saves {state, meta}; restores the newest readable checkpoint."""

  def __init__(self, directory: str, keep: int = 2):
    self.mngr = ocp.CheckpointManager(
      os.path.abspath(directory), options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    )

  def save(self, step: int, state: Any, meta: dict) -> None:
    self.mngr.save(
      step,
      args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
      force=True,
    )
    self.mngr.wait_until_finished()

  def restore(self, template_for: Callable[[dict], Any]) -> tuple[dict, Any] | None:
    for step in sorted(self.mngr.all_steps(), reverse=True):
      try:
        meta = self.mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        template = jax.tree.map(ocp.utils.to_shape_dtype_struct, template_for(meta))
        state = self.mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(template)))[
          "state"
        ]
        return meta, state
      except Exception as e:  # noqa: BLE001 - any unreadable checkpoint: say so, use the previous
        # kept for inspection, but out of the manager's way (the resumed run saves this step again)
        aside = os.path.join(str(self.mngr.directory), f"{step}.unreadable-{int(time.time())}")
        os.rename(os.path.join(str(self.mngr.directory), str(step)), aside)
        self.mngr.reload()
        print(
          f"warning: checkpoint {step} in {self.mngr.directory} is unreadable ({type(e).__name__}: "
          f"{str(e)[:200]}); moved to {aside}; trying the previous one.",
          file=sys.stderr,
        )
    return None

  def close(self):
    self.mngr.close()


FINAL_DIR = "final"  # the reported, extracted model of a finished run: {"params", "model_state"}


def save_final(workdir: str, params, model_state) -> None:
  path = os.path.abspath(os.path.join(workdir, FINAL_DIR))
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(path, {"params": params, "model_state": model_state}, force=True)


def load_final(workdir: str, params, model_state):
  """The extracted model another run reported (``init_from``), checked against this model."""
  path = os.path.abspath(os.path.join(workdir, FINAL_DIR))
  if not os.path.isdir(path):
    raise FileNotFoundError(
      f"config key 'init_from'={workdir!r}: no finished run there ({path} is missing). Fix: run that "
      "config to the end first (its summary.json and final/ are written last)."
    )
  template = {"params": params, "model_state": model_state}
  with ocp.StandardCheckpointer() as ckptr:
    metadata = ckptr.metadata(path)
    meta_tree = getattr(metadata, "item_metadata", metadata)
    got = {pj.tree.path_str(k): tuple(v.shape) for k, v in jax.tree_util.tree_flatten_with_path(meta_tree)[0]}
    want = {pj.tree.path_str(k): tuple(v.shape) for k, v in jax.tree_util.tree_flatten_with_path(template)[0]}
    if got != want:
      diff = sorted(set(got.items()) ^ set(want.items()))[:4]
      raise ValueError(
        f"config key 'init_from'={workdir!r}: that run's model does not match config.model={{...}} "
        f"(first differences, path and shape: {diff}). Fix: use the same model and model_kwargs."
      )
    loaded = ckptr.restore(path, jax.tree.map(ocp.utils.to_shape_dtype_struct, template))
  return loaded["params"], loaded["model_state"]


# ---------------------------------------------------------------------------- the loop


def _record(state: training.TrainState, stage: int, val_accuracy: float) -> dict[str, Any]:
  """What the run reports at the end: the best-validation (or last) model of a stage."""
  return {
    "params": state.params,
    "pruner_state": state.pruner_state,
    "model_state": state.model_state,
    "val_accuracy": jnp.asarray(val_accuracy, jnp.float32),
    "stage": jnp.asarray(stage, jnp.int32),
  }


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs every stage of ``config`` in ``workdir``; returns (and writes) the summary."""
  validate_config(config)
  t0 = time.time()
  commit = _git_commit()  # the code this run started from
  os.makedirs(workdir, exist_ok=True)
  ds = data_lib.load(
    config.dataset,
    data_dir=config.get("data_dir"),
    npz=config.get("npz"),
    val_size=config.val_size,
    seed=config.seed,
    train_subset=config.get("train_subset"),
    normalization=tuple(map(tuple, config.normalization)) if config.get("normalization") else None,
  )
  model = models_lib.get_model(config.model, num_classes=ds.num_classes, **config.get("model_kwargs", {}))
  apply_fn = training.linen_apply(model)
  root = jax.random.PRNGKey(config.seed)
  example = jnp.zeros((1, *ds.train_image.shape[1:]), jnp.float32)
  init_vars = model.init(jax.random.fold_in(root, 0), example)
  n_train = len(ds.train_label)
  spe = n_train // config.batch_size
  if spe == 0:
    raise ValueError(f"config key 'batch_size'={config.batch_size} exceeds the {n_train} training images.")
  get_batch = _batch_fn(ds, config.augment)
  ckpt = _Checkpoints(os.path.join(workdir, "checkpoints"))
  metrics_file = open(os.path.join(workdir, "metrics.jsonl"), "a")  # noqa: SIM115 - closed below

  def log(record: dict) -> None:
    metrics_file.write(json.dumps(record) + "\n")
    metrics_file.flush()

  params = init_vars["params"]
  model_state = {k: v for k, v in init_vars.items() if k != "params"}
  if config.get("init_from"):
    params, model_state = load_final(config.init_from, params, model_state)
  stage_objs = []
  for stage in config.stages:
    total = int(round(stage.epochs * spe))
    pruner = PRUNERS[stage.pruner.name](stage.pruner, spe, total)
    variables_tx = {"variables": _transform(stage.get("mask_optimizer"), total)}
    for label, o in stage.get("variable_optimizers", {}).items():
      variables_tx[label] = _transform(ml_collections.ConfigDict(o), total)
    tx = training.optimizer(_transform(stage.optimizer, total), variables_tx, pruner=pruner)
    stage_objs.append((stage, total, pruner, tx))

  def fresh_state(si, params, model_state):
    stage, total, pruner, tx = stage_objs[si]
    key = jax.random.fold_in(root, 1000 + si)
    state = training.init_train_state(key, {"params": params, **model_state}, pruner, tx)
    zeros = jax.tree.map(jnp.zeros_like, params)
    return state._replace(pruner_state=pruner.update(params, state.pruner_state, zeros, jnp.int32(0)))

  def template_for(meta):
    si = meta["stage"]
    # shapes only: the params of any stage have the model's shapes (masks, not surgery)
    return {"train": fresh_state(si, params, model_state), "best": _best_template(si)}

  def _best_template(si):
    return _record(fresh_state(si, params, model_state), si, 0.0)

  restored = ckpt.restore(template_for)
  start_stage, state, best = 0, None, None
  if restored is not None:
    meta, saved = restored
    start_stage, state, best = meta["stage"], saved["train"], saved["best"]
    print(
      f"resuming from stage {start_stage} step {int(state.step)} ({workdir}/checkpoints)", file=sys.stderr
    )

  steps_this_run = 0
  global_offset = sum(stage_objs[i][1] for i in range(start_stage))
  last_good = None
  eval_key = jax.random.fold_in(root, 7)
  train_acc = float("nan")
  for si in range(start_stage, len(stage_objs)):
    stage, total, pruner, tx = stage_objs[si]
    if state is None:
      state = fresh_state(si, params, model_state)
    if best is None:
      best = _record(state, si, -1.0)
    train_step = jax.jit(training.make_train_step(apply_fn, pruner, tx))
    finalized = config.eval_finalized
    eval_step = jax.jit(training.make_eval_step(apply_fn, pruner, finalized=finalized))
    eval_sparsity = jax.jit(functools.partial(training.evaluated_sparsity, pruner, finalized=finalized))
    data_key = jax.random.fold_in(root, 2000 + si)
    bar = tqdm(
      total=total,
      initial=int(state.step),
      desc=f"{stage.name}",
      disable=not config.progress,
      dynamic_ncols=True,
    )
    step = int(state.step)
    while step < total:
      epoch, i0 = divmod(step, spe)
      order = data_lib.epoch_order(jax.random.fold_in(data_key, epoch), n_train, config.batch_size)
      for i in range(i0, spe):
        if step >= total:
          break
        batch = get_batch(
          ds.train_image, ds.train_label, order[i], jax.random.fold_in(data_key, 10**6 + step)
        )
        state, metrics = train_step(state, batch)
        step += 1
        steps_this_run += 1
        bar.update(1)
        boundary = step % config.log_every_steps == 0 or step == total
        ckpt_due = step % config.checkpoint_every_steps == 0 or step == total
        interrupted = config.max_steps_this_run is not None and steps_this_run >= config.max_steps_this_run
        if boundary or ckpt_due or interrupted:
          m = {k: float(v) for k, v in metrics.items()}
          if not math.isfinite(m["loss"]):
            bar.close()
            raise FloatingPointError(
              f"loss is {m['loss']} at stage {si} ({stage.name}) step {step}. The run stopped; the last "
              f"good checkpoint is {last_good if last_good is not None else 'none (no checkpoint yet)'} in "
              f"{workdir}/checkpoints. Fix: lower the learning rate or check the data, then rerun to resume."
            )
          train_acc = m["accuracy"]
          bar.set_postfix(
            loss=f"{m['loss']:.3f}", acc=f"{m['accuracy']:.3f}", sparsity=f"{m['sparsity']:.3f}"
          )
          log({"split": "train", "stage": si, "step": step, "global_step": global_offset + step, **m})
        if step % spe == 0 or step == total:
          val = _evaluate(eval_step, state, ds.val_image, ds.val_label, ds, config.eval_batch_size, eval_key)
          log(
            {
              "split": "val",
              "stage": si,
              "step": step,
              "epoch": step / spe,
              "global_step": global_offset + step,
              **val,
              "sparsity": float(eval_sparsity(state)),  # of the network the accuracy is of
            }
          )
          if val["accuracy"] > float(best["val_accuracy"]) or not config.select_best:
            best = _record(state, si, max(val["accuracy"], float(best["val_accuracy"])))
        if ckpt_due or interrupted:
          ckpt.save(global_offset + step, {"train": state, "best": best}, {"stage": si})
          last_good = global_offset + step
        if interrupted:
          bar.close()
          ckpt.close()
          metrics_file.close()
          return {"interrupted": True, "stage": si, "step": step}
    bar.close()
    params, _ = pruner.finalize(state.params, state.pruner_state)
    model_state = state.model_state
    global_offset += total
    if si + 1 < len(stage_objs):
      state, best = None, None

  # the reported model: the best-validation one of the last stage, or the last one
  stage, total, pruner, _ = stage_objs[-1]
  final = state._replace(
    params=best["params"], pruner_state=best["pruner_state"], model_state=best["model_state"]
  )
  eval_step = jax.jit(training.make_eval_step(apply_fn, pruner, finalized=True))
  test = _evaluate(eval_step, final, ds.test_image, ds.test_label, ds, config.eval_batch_size, eval_key)
  val = _evaluate(eval_step, final, ds.val_image, ds.val_label, ds, config.eval_batch_size, eval_key)
  passes = int(config.get("sampled_test_passes", 0))
  if passes:
    # stochastic methods (supermask, ASLP): accuracy of freshly sampled masks, pass by pass
    sampled_step = jax.jit(training.make_eval_step(apply_fn, pruner, finalized=False))
    test["sampled"] = [
      _evaluate(
        sampled_step,
        final,
        ds.test_image,
        ds.test_label,
        ds,
        config.eval_batch_size,
        jax.random.fold_in(eval_key, 100 + i),
      )["accuracy"]
      for i in range(passes)
    ]
  params, masks = pruner.finalize(final.params, final.pruner_state)
  save_final(workdir, params, final.model_state)
  summary = _summary(
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
    global_offset,
    time.time() - t0,
    commit,
  )
  ckpt.close()
  metrics_file.close()
  return summary


def _summary(
  config,
  workdir,
  params,
  masks,
  model_state,
  apply_fn,
  example,
  test,
  val,
  best_val,
  train_acc,
  steps,
  wall,
  commit,
) -> dict[str, Any]:
  counts = pj.count_params(params)
  prunable = [m for m in jax.tree.leaves(masks) if np.ndim(m) > 0]
  kept, total = pj.count_kept(masks, params) if prunable else (0, 1)
  sparsity = 1.0 - int(kept) / int(total) if prunable else 0.0
  all_arrays = jax.tree.map(lambda p: pj.tree.is_array(p), params)
  kept_all, total_all = pj.count_kept(masks, params, selection=all_arrays)
  flops = pj.count_flops(lambda p, x: apply_fn(p, model_state, x, train=False)[0], params, example)
  summary = {
    "study": config.study,
    "method": config.method,
    "model": config.model,
    "dataset": config.dataset,
    "variant": config.variant,
    "seed": config.seed,
    "epochs": float(sum(s.epochs for s in config.stages)),
    "steps": int(steps),
    "test_accuracy": test["accuracy"],
    "test_loss": test["loss"],
    **_sampled_fields(test.get("sampled")),
    "val_accuracy": val["accuracy"],
    "best_val_accuracy": best_val,
    **_curve_fields(workdir, len(config.stages) - 1),
    "last_train_batch_accuracy": train_acc,
    "sparsity": sparsity,
    "sparsity_all": 1.0 - int(kept_all) / int(total_all),
    "params_total": counts.total,
    "params_nonzero": counts.nonzero,
    "flops_dense": flops.flops,
    "flops_effective": flops.effective_flops,
    "layer_density": [{"path": s.path, "kept": s.kept, "total": s.total} for s in pj.mask_summary(masks)],
    "wall_time_s": wall,
    "device": jax.devices()[0].device_kind,
    "git_commit": commit,
    "command": " ".join(sys.argv),
    "config": json.loads(config.to_json_best_effort()),
  }
  with open(os.path.join(workdir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=1)
  return summary


def _sampled_fields(accs: list[float] | None) -> dict[str, Any]:
  if not accs:
    return {}
  return {
    "test_accuracy_sampled_mean": float(np.mean(accs)),
    "test_accuracy_sampled_std": float(np.std(accs)),
    "test_accuracy_sampled": accs,
  }


def _curve_fields(workdir: str, stage: int, max_train_points: int = 200) -> dict[str, Any]:
  """The last stage's validation curve and (thinned) train-metric curve from metrics.jsonl (a
  resumed run logs a step again: the later record wins), and the epoch of the best validation
  accuracy (the first, on ties)."""
  by_split: dict[str, dict[int, dict]] = {"val": {}, "train": {}}
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    for line in f:
      r = json.loads(line)
      if r.get("split") in by_split and r.get("stage") == stage:
        by_split[r["split"]][r["step"]] = r
  curve = [
    {"epoch": r["epoch"], "accuracy": r["accuracy"], "sparsity": r["sparsity"]}
    for _, r in sorted(by_split["val"].items())
  ]
  train_records = [r for _, r in sorted(by_split["train"].items())]
  stride = max(1, math.ceil(len(train_records) / max_train_points))
  keep = train_records[::stride] + ([train_records[-1]] if (len(train_records) - 1) % stride else [])
  drop = ("split", "stage", "global_step")
  out: dict[str, Any] = {
    "val_curve": curve,
    "train_curve": [{k: v for k, v in r.items() if k not in drop} for r in keep],
  }
  if curve:
    best = max(range(len(curve)), key=lambda i: (curve[i]["accuracy"], -i))
    out["best_val_epoch"] = curve[best]["epoch"]
  return out
