"""The sweep driver: runs a grid through experiments.main, collects summaries, skips what is
collected and reports (without stopping at) a failed run."""

import json
import os
import textwrap

import pytest
from helpers import write_tiny_cifar_npz

from experiments import sweep


def test_sweep_runs_collects_skips_and_reports_failures(tmp_path, capsys):
  npz = write_tiny_cifar_npz(tmp_path / "tiny.npz", 96, 32)
  config = tmp_path / "grid_config.py"
  config.write_text(
    textwrap.dedent(
      f"""
      from experiments.configs.base import base_config, stage

      def get_config(arg):
        c = base_config()
        c.model, c.npz = "conv2", {npz!r}
        c.model_kwargs = {{"conv_widths": (4, 4), "dense_widths": (8, 8)}}
        c.val_size, c.batch_size, c.eval_batch_size, c.progress = 32, 32, 32, False
        c.method, c.variant = "dense", arg
        c.stages = [stage("dense", 1, {{"name": "dense"}}, {{"name": "sgd", "lr": 0.01}})]
        if arg == "broken":
          c.stages[0].pruner.name = "lottery"
        return c

      def grid(name):
        return ["ok", "broken"]
      """
    )
  )
  argv = [
    "--config",
    str(config),
    "--grid",
    "g",
    "--runs",
    str(tmp_path / "runs"),
    "--results",
    str(tmp_path / "res"),
  ]
  assert sweep.main(argv) == 1  # one run failed
  out = capsys.readouterr().out
  assert "conv2_dense_broken_seed0: FAILED" in out and "failed: ['conv2_dense_broken_seed0']" in out
  collected = json.loads((tmp_path / "res" / "conv2_dense_ok_seed0.json").read_text())
  assert collected["variant"] == "ok" and collected["steps"] == 2
  sweep.main([*argv, "--only", "ok"])
  assert "conv2_dense_ok_seed0: collected, skipped" in capsys.readouterr().out


def test_sweep_children_share_one_compilation_cache_unless_told_otherwise(tmp_path, monkeypatch):
  monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
  base = ["--config", "c.py", "--grid", "g", "--runs", str(tmp_path / "runs"), "--results", "r"]

  def env(*extra):
    return sweep.child_env(sweep.parse_args([*base, *extra]))

  assert env()["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / "runs" / "xla-cache")
  assert env("--xla-cache", "rel")["JAX_COMPILATION_CACHE_DIR"] == os.path.abspath("rel")
  assert "JAX_COMPILATION_CACHE_DIR" not in env("--no-xla-cache")
  monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/mine")
  assert env()["JAX_COMPILATION_CACHE_DIR"] == "/mine"


def test_seeds_repeat_the_grid_seed_by_seed_and_only_keeps_any_matching_entry():
  grid = ["method=dense", "method=mp,rate=0.9", "method=mp,rate=0.99"]
  assert sweep.entries(grid) == grid
  assert sweep.entries(grid, "1,2") == [
    "method=dense,seed=1",
    "method=mp,rate=0.9,seed=1",
    "method=mp,rate=0.99,seed=1",
    "method=dense,seed=2",
    "method=mp,rate=0.9,seed=2",
    "method=mp,rate=0.99,seed=2",
  ]
  assert sweep.entries(grid, "1", ["dense", "0.99"]) == ["method=dense,seed=1", "method=mp,rate=0.99,seed=1"]
  assert sweep.parse_args(
    ["--config", "c", "--grid", "g", "--runs", "r", "--results", "s", "--only", "a", "--only", "b"]
  ).only == ["a", "b"]
  with pytest.raises(ValueError, match=r"--seeds 'one'.*comma-separated integers"):
    sweep.entries(grid, "one")
  with pytest.raises(ValueError, match=r"already sets the seed in 'method=dense,seed=0'"):
    sweep.entries(["method=dense,seed=0"], "1")


def test_bad_seeds_or_grid_stop_the_sweep_with_the_message_and_no_run(tmp_path):
  argv = [
    "--config",
    "experiments/configs/aslp.py",
    "--runs",
    str(tmp_path / "r"),
    "--results",
    str(tmp_path / "s"),
  ]
  with pytest.raises(SystemExit, match=r"sweep: --seeds '1'.*already sets the seed"):
    sweep.main([*argv, "--grid", "cpu_conv2", "--seeds", "1"])  # the ASLP grid fixes its own seeds
  with pytest.raises(SystemExit, match=r"sweep: aslp grid 'cpu_mlp' is unknown"):
    sweep.main([*argv, "--grid", "cpu_mlp"])
  assert not (tmp_path / "r").exists() and not (tmp_path / "s").exists()
