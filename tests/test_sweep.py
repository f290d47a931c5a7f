"""The sweep driver: runs a grid through experiments.main, collects summaries, skips what is
collected and reports (without stopping at) a failed run."""

import json
import textwrap

import numpy as np

from experiments import sweep


def test_sweep_runs_collects_skips_and_reports_failures(tmp_path, capsys):
  rng = np.random.default_rng(0)
  npz = tmp_path / "tiny.npz"
  np.savez(
    npz,
    train_image=rng.integers(0, 256, (96, 32, 32, 3), dtype=np.uint8),
    train_label=rng.integers(0, 10, 96),
    test_image=rng.integers(0, 256, (32, 32, 32, 3), dtype=np.uint8),
    test_label=rng.integers(0, 10, 32),
  )
  config = tmp_path / "grid_config.py"
  config.write_text(
    textwrap.dedent(
      f"""
      from experiments.configs.base import base_config, stage

      def get_config(arg):
        c = base_config()
        c.model, c.npz = "conv2", {str(npz)!r}
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
