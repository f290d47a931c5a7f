import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax

import pruning_jax as pj
from pruning_jax import models, training
from pruning_jax.models.layers import Conv3x3, conv3x3_same

# small widths: the same code paths (BN, projections, patches) at a fraction of the compile time
SMALL = {
  "conv2": {"conv_widths": (4, 4), "dense_widths": (8, 8)},
  "conv4": {"conv_widths": (4, 4, 8, 8), "dense_widths": (8, 8)},
  "conv6": {"conv_widths": (4, 4, 8, 8, 8, 8), "dense_widths": (8, 8)},
  "vgg11": {"widths": [4] * 8},
  "vgg16": {"widths": [4] * 13},
  "vgg19": {"widths": [4] * 16},
  "resnet18": {"stage_widths": (4, 8, 8, 8)},
  "resnet20": {"stage_widths": (4, 8, 8)},
  "resnet56": {"stage_widths": (4, 4, 4), "blocks_per_stage": (2, 2, 2)},
  "wrn22_2": {"stem_width": 4, "stage_widths": (4, 8, 8), "blocks_per_stage": (2, 1, 1)},
  "lenet300100": {"widths": (16, 8)},
  "lenet5": {"conv_widths": (2, 4), "dense_widths": (8, 8)},
}


# Deeper members of a family share their code path with a faster one (ResNet56 with ResNet20,
# VGG11/16 with VGG19); they run with the slow tests to keep `make test` short.
SAME_CODE_PATH = {"resnet56", "vgg11", "vgg16"}


@pytest.mark.parametrize(
  "name",
  [pytest.param(n, marks=pytest.mark.slow) if n in SAME_CODE_PATH else n for n in sorted(models.MODELS)],
)
def test_one_pruned_train_step_every_model(name):
  shape = (4, 28, 28, 1) if name.startswith("lenet") else (4, 32, 32, 3)
  model = models.get_model(name, **SMALL[name])
  x = jax.random.normal(jax.random.key(0), shape)
  y = jnp.array([0, 1, 2, 3])
  pruner = pj.methods.magnitude_pruning(0.5)
  tx = training.optimizer(optax.sgd(0.1, momentum=0.9), pruner=pruner)
  state = training.init_train_state(jax.random.key(1), model.init(jax.random.key(2), x), pruner, tx)
  state, metrics = jax.jit(training.make_train_step(training.linen_apply(model), pruner, tx))(
    state, {"image": x, "label": y}
  )
  assert np.isfinite(float(metrics["loss"]))
  assert float(metrics["sparsity"]) == pytest.approx(0.5, abs=1e-3)
  out = training.make_eval_step(training.linen_apply(model), pruner)(state, {"image": x, "label": y}, None)
  assert int(out["count"]) == 4


def test_published_parameter_counts():
  counts = {}
  for name, shape in [
    ("conv2", (1, 32, 32, 3)),
    ("conv4", (1, 32, 32, 3)),
    ("conv6", (1, 32, 32, 3)),
    ("resnet20", (1, 32, 32, 3)),
    ("resnet56", (1, 32, 32, 3)),
    ("wrn22_2", (1, 32, 32, 3)),
    ("lenet300100", (1, 28, 28, 1)),
  ]:
    v = jax.eval_shape(models.get_model(name).init, jax.random.key(0), jnp.zeros(shape))
    counts[name] = sum(x.size for x in jax.tree.leaves(v["params"]) if len(x.shape) > 1)
  # weight counts (kernels): Conv2/4/6 as in PAPERS.md s.1 (4.30M, 2.43M, 2.26M), LeNet 266,200
  assert round(counts["conv2"] / 1e6, 2) == 4.30
  assert round(counts["conv4"] / 1e6, 2) == 2.42 or round(counts["conv4"] / 1e6, 2) == 2.43
  assert round(counts["conv6"] / 1e6, 2) == 2.26
  assert counts["lenet300100"] == 784 * 300 + 300 * 100 + 100 * 10
  assert 0.26e6 < counts["resnet20"] < 0.28e6 and 0.84e6 < counts["resnet56"] < 0.86e6
  # WRN-22-2 by hand: stem, 3 stages of 3 pre-activation blocks (3x3 convs, 1x1 projections), fc
  stages = [(16, 32), (32, 64), (64, 128)]
  wrn = 27 * 16 + 128 * 10
  wrn += sum(9 * i * o + 9 * o * o + i * o + 2 * 2 * 9 * o * o for i, o in stages)
  assert counts["wrn22_2"] == wrn == 1_076_912


@pytest.mark.parametrize("hw", [2, 4, 8])
def test_conv3x3_paths_agree_with_xla(hw):
  x = jax.random.normal(jax.random.key(0), (3, hw, hw, 5))
  ref_conv = nn.Conv(7, (3, 3), padding="SAME")
  v = ref_conv.init(jax.random.key(1), x)
  ref = ref_conv.apply(v, x)
  for patches_below in (0, 8):
    got = Conv3x3(7, patches_below=patches_below).apply(v, x)
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-5, atol=1e-5)


def test_conv3x3_custom_gradient_matches_autodiff():
  x = jax.random.normal(jax.random.key(0), (2, 6, 5, 3))
  k = jax.random.normal(jax.random.key(1), (3, 3, 3, 4))
  w = jax.random.normal(jax.random.key(2), (2, 6, 5, 4))
  conv = lambda x, k: lax.conv_general_dilated(
    x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
  )
  ref = jax.grad(lambda x, k: jnp.sum(conv(x, k) * w), argnums=(0, 1))(x, k)
  got = jax.jit(jax.grad(lambda x, k: jnp.sum(conv3x3_same(x, k) * w), argnums=(0, 1)))(x, k)
  for a, b in zip(got, ref, strict=True):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
