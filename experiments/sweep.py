"""Run a study grid one run at a time, resumably, and collect each run's summary.json.

    python -m experiments.sweep --config experiments/configs/aslp.py --grid cpu_conv2 \\
      --runs runs/aslp --results experiments/results/aslp

The config module's ``grid(name)`` lists the runs (config arguments). Each run is a subprocess
of ``experiments.main`` in ``RUNS/<name>``: a run whose summary is already collected is skipped,
an interrupted one resumes from its last checkpoint, and a failed one is reported and the sweep
goes on. Collected summaries are ``RESULTS/<model>_<method>_<variant>_seed<k>.json``.

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


def load_config_module(path: str):
  spec = importlib.util.spec_from_file_location("study_config", path)
  if spec is None or spec.loader is None:
    raise FileNotFoundError(f"--config {path!r}: not a Python file.")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "grid"):
    raise AttributeError(f"--config {path!r} has no grid(name) function listing its runs.")
  return module


def run_name(config) -> str:
  return f"{config.model}_{config.method}_{config.variant}_seed{config.seed}"


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
  ap.add_argument("--only", default=None, help="substring: run only the matching grid entries")
  ap.add_argument("--dry-run", action="store_true")
  ap.add_argument("--xla-cache", default=None, help="shared compilation cache (default RUNS/xla-cache)")
  ap.add_argument("--no-xla-cache", action="store_true", help="compile every run from scratch")
  return ap.parse_args(argv)


def main(argv=None) -> int:
  args = parse_args(argv)
  env = child_env(args)
  module = load_config_module(args.config)
  os.makedirs(args.results, exist_ok=True)
  failed = []
  for arg in module.grid(args.grid):
    if args.only and args.only not in arg:
      continue
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
