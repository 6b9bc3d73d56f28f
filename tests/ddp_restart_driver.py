"""torchrun driver for the restart test: `--resume auto`'s trainer; in the first attempt, rank 1 kills itself (SIGKILL)
at the start of step `kill_at` (after the checkpoint of step kill_at - 1); torchrun --max-restarts restarts the job."""

import os
import signal
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imgflow.training.trainer import Trainer
from tests.image_helpers import blob_images, tiny_config


def main(out: str, kill_at: int) -> None:
    torch.set_num_threads(1)
    cfg = tiny_config(Path(out), **{"train.steps": 6, "train.checkpoint_every": 2, "train.log_every": 1})
    trainer = Trainer(cfg, resume="auto", data=blob_images(32))
    loss = trainer.objective.per_sample_loss
    first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"

    def dies_once(model, batch):
        if first_attempt and trainer.rank == 1 and trainer.step == kill_at - 1:  # trainer.step: the steps done so far
            Path(out).with_suffix(".killed").write_text(f"rank 1 killed itself at step {kill_at}")
            os.kill(os.getpid(), signal.SIGKILL)
        return loss(model, batch)

    trainer.objective.per_sample_loss = dies_once
    print(f"attempt {os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}: rank {trainer.rank} from step {trainer.step}", flush=True)
    trainer.run(progress=False)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
