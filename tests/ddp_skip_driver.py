"""torchrun driver for the DDP skip test: rank 1 alone sees a non-finite loss at step 3; each rank saves its weights."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imgflow.training.trainer import Trainer
from tests.image_helpers import blob_images, tiny_config


def main(out: str) -> None:
    torch.set_num_threads(1)
    cfg = tiny_config(Path(out) / "run", **{"train.steps": 5, "train.checkpoint_every": 5, "train.on_nonfinite": "skip",
                                            "train.ema_decay": 0.0})
    trainer = Trainer(cfg, data=blob_images(32))
    loss = trainer.objective.per_sample_loss

    def poisoned(model, batch):
        weighted, logged = loss(model, batch)
        if trainer.rank == 1 and trainer.step == 2:  # the third step, on one process only
            return weighted * float("nan"), logged * float("nan")
        return weighted, logged

    trainer.objective.per_sample_loss = poisoned
    trainer.run(progress=False)
    torch.save({k: v.clone() for k, v in trainer.model.state_dict().items()}, Path(out) / f"rank{trainer.rank}.pt")


if __name__ == "__main__":
    main(sys.argv[1])
