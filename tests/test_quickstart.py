"""Smoke test of `make run`'s quickstart on the real MNIST copy (skipped where TFDS has none)."""

import json
import os

import pytest

from experiments import quickstart

DATA = os.environ.get("TFDS_DATA_DIR", "")


@pytest.mark.skipif(
  not os.path.isdir(os.path.join(DATA, "mnist")), reason="no prepared MNIST in TFDS_DATA_DIR"
)
def test_quickstart_one_epoch(tmp_path, capsys):
  quickstart.main(["--epochs", "1", "--sparsity", "0.8", "--workdir", str(tmp_path)])
  summary = json.loads((tmp_path / "summary.json").read_text())
  kernels = 784 * 300 + 300 * 100 + 100 * 10
  assert summary["sparsity"] == pytest.approx(round(0.8 * kernels) / kernels)
  assert summary["params_total"] == kernels + 300 + 100 + 10
  assert summary["flops_effective"] < summary["flops_dense"] * 0.25
  assert summary["test_accuracy"] > 0.9  # it trains while pruning
  assert "| test_accuracy |" in capsys.readouterr().out
