"""Run a study grid one run at a time, resumably, and collect each run's summary.json.

    python -m experiments.sweep --config experiments/configs/aslp.py --grid cpu_conv2 \\
      --runs runs/aslp --results experiments/results/aslp

The config module's ``grid(name)`` lists the runs (config arguments). Each run is a subprocess
of ``experiments.main`` in ``RUNS/<name>``: a run whose summary is already collected is skipped,
an interrupted one resumes from its last checkpoint, and a failed one is reported and the sweep
goes on. Collected summaries are ``RESULTS/<model>_<method>_<variant>_seed<k>.json``.

``--seeds 1,2`` repeats the grid once per seed (``,seed=<k>`` appended to each entry, the seeds
in the outer loop so a run that starts from another, e.g. MP from its dense run, comes after
it); ``--only`` (repeatable) keeps the entries containing any of its substrings.

The runs of a grid share one persistent XLA compilation cache (``--xla-cache``, default
``RUNS/xla-cache``): they build the same model, initializers and evaluation step, and on CPU
compiling those costs tens of seconds per process. A ``JAX_COMPILATION_CACHE_DIR`` already in the
environment wins.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys


def load_config_module(path: str, *, need_grid: bool = True):
  """The study config file at ``path`` as a module; a sweep needs its ``grid(name)``."""
  spec = importlib.util.spec_from_file_location("study_config", path)
  if spec is None or spec.loader is None:
    raise FileNotFoundError(f"--config {path!r}: not a Python file.")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if need_grid and not hasattr(module, "grid"):
    raise AttributeError(f"--config {path!r} has no grid(name) function listing its runs.")
  return module


def run_name(config) -> str:
  return f"{config.model}_{config.method}_{config.variant}_seed{config.seed}"


def entries(grid: list[str], seeds: str | None = None, only: list[str] | None = None) -> list[str]:
  """The config arguments to run: the grid, once per seed if ``seeds`` is given, filtered by ``only``."""
  if seeds is not None:
    try:
      seed_list = [int(k) for k in seeds.split(",")]
    except ValueError:
      raise ValueError(f"--seeds {seeds!r}: expected comma-separated integers, e.g. --seeds 1,2.") from None
    fixed = [e for e in grid if "seed=" in e]
    if fixed:
      raise ValueError(
        f"--seeds {seeds!r}: the grid already sets the seed in {fixed[0]!r}; drop --seeds or pick "
        "the grid's own seeds with --only seed=<k>."
      )
    grid = [f"{e},seed={k}" for k in seed_list for e in grid]
  return [e for e in grid if not only or any(o in e for o in only)]


def child_env(args) -> dict[str, str]:
  env = dict(os.environ)
  if not args.no_xla_cache and "JAX_COMPILATION_CACHE_DIR" not in env:
    env["JAX_COMPILATION_CACHE_DIR"] = os.path.abspath(args.xla_cache or os.path.join(args.runs, "xla-cache"))
  return env


def parse_args(argv=None) -> argparse.Namespace:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--config", required=True)
  ap.add_argument("--grid", required=True)
  ap.add_argument("--runs", required=True, help="work directories go here")
  ap.add_argument("--results", required=True, help="collected summaries go here")
  ap.add_argument(
    "--only", action="append", default=None, help="substring, repeatable: keep entries with one"
  )
  ap.add_argument("--seeds", default=None, help="comma-separated seeds: run the grid once per seed")
  ap.add_argument("--dry-run", action="store_true")
  ap.add_argument("--xla-cache", default=None, help="shared compilation cache (default RUNS/xla-cache)")
  ap.add_argument("--no-xla-cache", action="store_true", help="compile every run from scratch")
  return ap.parse_args(argv)


def main(argv=None) -> int:
  args = parse_args(argv)
  env = child_env(args)
  try:  # a bad flag or grid name is the user's to fix: say so without a traceback
    module = load_config_module(args.config)
    runs = entries(module.grid(args.grid), args.seeds, args.only)
  except (FileNotFoundError, AttributeError, ValueError) as e:
    raise SystemExit(f"sweep: {e}") from None
  os.makedirs(args.results, exist_ok=True)
  failed = []
  for arg in runs:
    if "runs" in getattr(module, "DEFAULTS", {}):
      arg = f"{arg},runs={args.runs}"  # runs that start from other runs find them here
    name = run_name(module.get_config(arg))
    target = os.path.join(args.results, f"{name}.json")
    if os.path.exists(target):
      print(f"[sweep] {name}: collected, skipped", flush=True)
      continue
    workdir = os.path.join(args.runs, name)
    cmd = [
      sys.executable,
      "-m",
      "experiments.main",
      f"--config={args.config}:{arg}",
      f"--workdir={workdir}",
      "--config.progress=False",
    ]
    print(f"[sweep] {name}: {' '.join(cmd)}", flush=True)
    if args.dry_run:
      continue
    rc = subprocess.call(cmd, env=env)
    summary = os.path.join(workdir, "summary.json")
    if rc != 0 or not os.path.exists(summary):
      print(f"[sweep] {name}: FAILED (exit {rc}); its checkpoints stay in {workdir}", flush=True)
      failed.append(name)
      continue
    shutil.copyfile(summary, target)
    with open(target) as f:
      s = json.load(f)
    print(f"[sweep] {name}: test {s['test_accuracy']:.4f} sparsity {s['sparsity']:.4f}", flush=True)
  if failed:
    print(f"[sweep] failed: {failed}", flush=True)
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
