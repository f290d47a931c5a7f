"""Orbax checkpoints of a run: the resumable train state with its metadata, rewind snapshots of
params, and the reported (extracted) model of a finished run."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import orbax.checkpoint as ocp

import pruning_jax as pj


class Checkpoints:
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
      except Exception as e:  # noqa: BLE001 - any unreadable checkpoint: say so, use the previous
        self._set_aside(step, e)
        continue
      # outside the except: a template that cannot be built is this program's error, not the
      # checkpoint's, which stays where it is for the fixed program to resume from
      try:
        template = jax.tree.map(ocp.utils.to_shape_dtype_struct, template_for(meta))
      except Exception as e:
        raise RuntimeError(
          f"cannot build the state to restore checkpoint {step} in {self.mngr.directory} into "
          f"(meta {meta}): {type(e).__name__}: {e}. "
          "The checkpoint is left in place; fix the cause and resume."
        ) from e
      try:
        state = self.mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(template)))[
          "state"
        ]
        return meta, state
      except Exception as e:  # noqa: BLE001
        self._set_aside(step, e)
    return None

  def _set_aside(self, step: int, e: Exception) -> None:
    # kept for inspection, but out of the manager's way (the resumed run saves this step again)
    aside = os.path.join(str(self.mngr.directory), f"{step}.unreadable-{int(time.time())}")
    os.rename(os.path.join(str(self.mngr.directory), str(step)), aside)
    self.mngr.reload()
    print(
      f"warning: checkpoint {step} in {self.mngr.directory} is unreadable ({type(e).__name__}: "
      f"{str(e)[:200]}); moved to {aside}; trying the previous one.",
      file=sys.stderr,
    )

  def close(self):
    self.mngr.close()


FINAL_DIR = "final"  # the reported, extracted model of a finished run: {"params", "model_state"}


def _save_tree(workdir: str, name: str, tree) -> None:
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(os.path.abspath(os.path.join(workdir, name)), tree, force=True)


def _restore_tree(path: str, template):
  with ocp.StandardCheckpointer() as ckptr:
    return ckptr.restore(path, jax.tree.map(ocp.utils.to_shape_dtype_struct, template))


def save_final(workdir: str, params, model_state) -> None:
  _save_tree(workdir, FINAL_DIR, {"params": params, "model_state": model_state})


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
  loaded = _restore_tree(path, template)
  return loaded["params"], loaded["model_state"]


STATE_DIR = "final_state"  # the reported checkpoint before extraction: {"params", "pruner_state"}


def save_state(workdir: str, params, pruner_state) -> None:
  """The reported checkpoint before extraction (the method's own forward pass, for diagnostics
  such as experiments/aslp_gap_probe.py)."""
  _save_tree(workdir, STATE_DIR, {"params": params, "pruner_state": pruner_state})


def load_state(workdir: str, params, pruner_state):
  """``(params, pruner_state)`` saved by :func:`save_state`, restored into the given shapes."""
  path = os.path.abspath(os.path.join(workdir, STATE_DIR))
  if not os.path.isdir(path):
    raise FileNotFoundError(
      f"{path} is missing: the run in {workdir} has not finished, or finished before the runner saved "
      "its reported checkpoint's state. Fix: finish (or rerun) it with the current runner."
    )
  loaded = _restore_tree(path, {"params": params, "pruner_state": pruner_state})
  return loaded["params"], loaded["pruner_state"]


def snapshot_path(workdir: str, stage: int, step: int) -> str:
  """Where the params of ``stage`` at ``step`` are kept for a later stage that rewinds to them."""
  return os.path.abspath(os.path.join(workdir, "snapshots", f"stage{stage}_step{step}"))


def save_snapshot(workdir: str, stage: int, step: int, params) -> None:
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(snapshot_path(workdir, stage, step), params, force=True)


def load_snapshot(workdir: str, stage: int, step: int, like):
  path = snapshot_path(workdir, stage, step)
  if not os.path.isdir(path):
    raise FileNotFoundError(
      f"rewind snapshot {path} is missing: the run never reached stage {stage} step {step}. Fix: point "
      "rewind_to at a step the earlier stage takes (0 is its start)."
    )
  with ocp.StandardCheckpointer() as ckptr:
    return ckptr.restore(path, jax.tree.map(ocp.utils.to_shape_dtype_struct, like))
