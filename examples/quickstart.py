"""The README's Python quick start, as a program: train the smoke config, load it, sample, save a grid.

Run it from the repository root with MNIST under data/ in torchvision's layout (downloaded there
where a network exists; change "data" to where yours is). tests/test_examples.py runs the README's
copy of this code on small fake MNIST files and checks that the two copies are the same.
"""

from imgflow import Sampler, load_config, train

config = load_config("configs/smoke.toml", {"data.data_root": "data"})    # MNIST in torchvision's layout
train(config)                                                 # 60 small steps; checkpoints in runs/smoke

sampler = Sampler.from_checkpoint("runs/smoke")               # a run folder or a ckpt-*.safetensors file
samples = sampler.sample(20, labels=[3, 7], steps=10)         # classes by index, or by name: labels=["cat"]
print(samples.images.shape, samples.nfe)                      # (20, 1, 28, 28) in [-1, 1]; 10 NFE
samples.save_grid("digits.png")                               # or samples.to_pil(), samples.grid()
