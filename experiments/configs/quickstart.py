"""`make run`: ASLP subnetwork extraction from an untrained Conv4 on CIFAR-10, short CPU budget.

    python -m experiments.main --config experiments/configs/quickstart.py --workdir runs/quickstart

The ASLP study's recipe (experiments/configs/aslp.py: frozen He-normal weights, signed constant,
smart rescale, random crop + flip, mask logits by SGD lr 50 momentum 0.9, batch 256) on a budget
that fits a few minutes of a 2-core CPU: 10,000 training images, 2 epochs (78 steps). ASLP needs
hundreds of epochs to converge, so expect an accuracy not far above chance: this run shows the
pipeline (sampling, extraction at m >= 0, the emergent pruning rate, FLOP accounting), not the
method's accuracy. Variant `smoke` runs in seconds.
"""

from experiments.configs import aslp


def get_config(arg: str = ""):
  if arg not in ("", "smoke"):
    raise ValueError(f"quickstart config variant {arg!r} is unknown; expected '' or 'smoke'.")
  budget = "budget=smoke" if arg == "smoke" else "epochs=2"
  c = aslp.get_config(f"method=aslp,model=conv4,wr=1,sc=1,da=1,seed=0,{budget}")
  c.study = "quickstart"
  return c
