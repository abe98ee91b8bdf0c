"""A training job for tests/test_distributed.py, run under mpiexec (or alone, as P = 1).

    python tests/mpi_job.py CORPUS OUT.npz CONFIGS.json

For each configuration (a dict of train() options), runs max_iters steps of the trainer and
records, on rank 0, every step's loss and the final parameters into OUT.npz as
'<k>.losses' and '<k>.param.<name>'.
"""

from __future__ import annotations

import io
import json
import sys

import numpy as np

from fastrnn.train import Trainer


def run(corpus: str, options: dict) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    steps = options.pop("max_iters")
    trainer = Trainer(
        {"corpus": corpus, "max_iters": steps, **options}, text=None, out=io.StringIO()
    )
    losses = [trainer.train_step() for _ in range(steps)]
    return np.array(losses), trainer.model.params


def main(corpus: str, out: str, configs_path: str) -> None:
    with open(configs_path, encoding="utf-8") as f:
        configs = json.load(f)
    arrays = {}
    for k, options in enumerate(configs):
        losses, params = run(corpus, dict(options))
        arrays[f"{k}.losses"] = losses
        arrays.update({f"{k}.param.{n}": p for n, p in params.items()})
    from fastrnn.distributed import world

    if world().is_root:
        np.savez(out, **arrays)


if __name__ == "__main__":
    main(*sys.argv[1:4])
