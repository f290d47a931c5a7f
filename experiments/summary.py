"""summary.json of a finished run: what it reports, how it was measured, and its curves."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from typing import Any

import jax
import numpy as np

import pruning_jax as pj


def git_commit() -> str:
  try:
    return subprocess.run(
      ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return "unknown"


def write_summary(
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
  model_kwargs=None,
  extra=None,
) -> dict[str, Any]:
  counts = pj.count_params(params)
  prunable = [m for m in jax.tree.leaves(masks) if np.ndim(m) > 0]
  kept, total = pj.count_kept(masks, params=params) if prunable else (0, 1)
  sparsity = 1.0 - int(kept) / int(total) if prunable else 0.0
  all_arrays = jax.tree.map(lambda p: pj.tree.is_array(p), params)
  kept_all, total_all = pj.count_kept(masks, params=params, selection=all_arrays)
  flops = pj.count_flops(lambda p, x: apply_fn(p, model_state, x, train=False)[0], params, example)
  summary = {
    "study": config.study,
    "method": config.method,
    "model": config.model,
    "model_kwargs": model_kwargs or {},
    "dataset": config.dataset,
    "variant": config.variant,
    "seed": config.seed,
    "epochs": float(sum(s.epochs for s in config.stages)),
    "steps": int(steps),
    "test_accuracy": test["accuracy"],
    "test_loss": test["loss"],
    **{k: v for k, v in test.items() if k not in ("accuracy", "loss")},  # the config's test_evaluators
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
    "macs_per_example": flops.macs,
    "layer_density": [{"path": s.path, "kept": s.kept, "total": s.total} for s in pj.mask_summary(masks)],
    "wall_time_s": wall,
    "device": jax.devices()[0].device_kind,
    "git_commit": commit,
    "command": " ".join(sys.argv),
    "config": json.loads(config.to_json_best_effort()),
    **(extra or {}),
  }
  with open(os.path.join(workdir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=1)
  return summary


def _read_metrics(workdir: str) -> dict[int, dict[str, dict[int, dict]]]:
  """``{stage: {split: {step: record}}}`` from metrics.jsonl (a resumed run logs a step again:
  the later record wins)."""
  out: dict[int, dict[str, dict[int, dict]]] = {}
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    for line in f:
      r = json.loads(line)
      if r.get("split") in ("val", "train"):
        out.setdefault(r["stage"], {"val": {}, "train": {}})[r["split"]][r["step"]] = r
  return out


def _training_macs(train_records: list[dict]) -> float | None:
  """Forward MACs per example summed over the stage's steps: each logged ``macs`` (of the masks
  the next step trains with) held until the next log, the first one from step 0 (exact where
  the counts change only on the log grid, as for dense, static, SET and RigL)."""
  if not train_records or any("macs" not in r for r in train_records):
    return None  # a run logged before the runner recorded MACs
  total, prev = 0.0, 0
  for i, r in enumerate(train_records):
    held = train_records[max(i - 1, 0)]["macs"]
    total += (r["step"] - prev) * held
    prev = r["step"]
  return total


def _stage_curves(records: dict[str, dict[int, dict]], max_train_points: int) -> dict[str, Any]:
  drop = ("split", "stage", "global_step")
  curve = [{k: v for k, v in r.items() if k not in drop} for _, r in sorted(records["val"].items())]
  train_records = [r for _, r in sorted(records["train"].items())]
  stride = max(1, math.ceil(len(train_records) / max_train_points))
  keep = train_records[::stride] + ([train_records[-1]] if (len(train_records) - 1) % stride else [])
  out = {"val_curve": curve, "train_curve": [{k: v for k, v in r.items() if k not in drop} for r in keep]}
  macs = _training_macs(train_records)
  if macs is not None:
    out["training_macs_per_example"] = macs
  return out


_CURVE_KEYS = ("epoch", "accuracy", "sparsity", "learned_abs_above")


def _curve_fields(workdir: str, stage: int, max_train_points: int = 200) -> dict[str, Any]:
  """The last stage's validation curve and (thinned) train-metric curve, those of the earlier
  stages that trained (``earlier_stages``: e.g. a gate-learning stage's gate curve), and the
  epoch of the best validation accuracy (the first, on ties)."""
  by_stage = _read_metrics(workdir)
  empty = {"val": {}, "train": {}}
  out: dict[str, Any] = _stage_curves(by_stage.get(stage, empty), max_train_points)
  # each epoch's primary accuracy, any further view's (select_on) and the learned variables'
  # spread (learned_stats)
  out["val_curve"] = [
    {k: v for k, v in r.items() if k in _CURVE_KEYS or k.endswith("_accuracy")} for r in out["val_curve"]
  ]
  earlier = {str(i): _stage_curves(by_stage[i], max_train_points) for i in sorted(by_stage) if i < stage}
  if earlier:
    out["earlier_stages"] = earlier
  curve = out["val_curve"]
  if curve:
    best = max(range(len(curve)), key=lambda i: (curve[i]["accuracy"], -i))
    out["best_val_epoch"] = curve[best]["epoch"]
  return out
