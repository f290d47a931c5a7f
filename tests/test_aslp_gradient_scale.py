"""The ASLP gradient-scale diagnostic: one row per masked layer, draw averaging, the report section."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import aslp_gradient_scale as gs
from experiments.configs import aslp as report_aslp


@pytest.fixture(scope="module")
def batch():
  # the measurement is model-agnostic; a LeNet-300-100 on 8x8 inputs keeps the test fast
  images = jax.random.normal(jax.random.key(0), (4, 8, 8, 3))
  return images, jnp.arange(4) % 10


def test_one_row_per_weight_layer_and_draw_average(batch):
  one = gs.layer_gradients("lenet300100", False, *batch, samples=1)
  assert list(one) == ["Dense_0/kernel", "Dense_1/kernel", "Dense_2/kernel"]  # biases carry no logits
  assert one["Dense_0/kernel"][2] == 8 * 8 * 3 * 300
  for mean_rms, one_rms, _ in one.values():
    assert mean_rms == one_rms > 0  # one draw: its mean is itself
  two = gs.layer_gradients("lenet300100", False, *batch, samples=2)
  for layer, (mean_rms, one_rms, _) in two.items():
    assert one_rms == pytest.approx(one[layer][1])  # the same first draw
    assert mean_rms != pytest.approx(one_rms)


def test_report_section_reads_the_summary(tmp_path):
  rows = [
    {
      "net": "conv2",
      "signed_constant": sc,
      "layer": f"L{i}/kernel",
      "size": 9,
      "rms_mean_grad": 1e-3,
      "rms_grad": 2e-3,
      "steps_to_unit": s,
    }
    for sc in (False, True)
    for i, s in enumerate((2.0, 2000.4))
  ]
  summary = {"rows": rows, "samples": 8, "batch": 256, "mask_sgd": {"lr": 50.0, "momentum": 0.9}}
  assert report_aslp.gradient_scale_section(str(tmp_path)) == []
  (tmp_path / "gradient_scale").mkdir()
  (tmp_path / "gradient_scale" / "summary.json").write_text(json.dumps(summary))
  text = "\n".join(report_aslp.gradient_scale_section(str(tmp_path)))
  assert "| conv2 | 1 | 2, 2,000 |" in text
  assert "SGD (lr 50, momentum 0.9)" in text
  assert "train for 195, 390 steps." in "\n".join(
    report_aslp.gradient_scale_section(str(tmp_path), [390, 195, 390])
  )
  np.testing.assert_equal(gs.markdown(summary).count("\n"), 1 + len(rows))
