"""Training of image flow models with HF accelerate (see `trainer.train`)."""
