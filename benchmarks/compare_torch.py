"""fastrnn against a PyTorch script of the same model, one training step each, float32, one thread.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare_torch.py [--only S,M]

PyTorch is not a dependency of fastrnn: install a CPU build of it yourself to run this. Two
PyTorch versions of the model are timed, both with full BPTT over the chunk, mean cross-entropy,
elementwise gradient clipping at 5 and Adam, as fastrnn's step (benchmarks/_measure.TrainingStep):
  one-hot    one-hot input into nn.RNN(V, H): exactly fastrnn's model (W_ih is Wxh^T, b_ih + b_hh
             is bh), but the input product is a dense (T*B, V) @ (V, H) GEMM, costly at large V;
  embedding  nn.Embedding(V, H) into nn.RNN(H, H): the usual char-RNN script; the gather is free
             but nn.RNN adds an (H, H) input product that fastrnn's model does not have.
Rounds alternate between the three steps; each figure is the best round.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import _measure  # noqa: E402  (imports fastrnn: both OpenBLAS copies loaded before limits)
from _configs import CONFIGS, BenchConfig  # noqa: E402

try:
    import torch
except ImportError:  # pragma: no cover - depends on the machine
    sys.exit("compare_torch: PyTorch is not installed (install a CPU build to run this comparison)")

CHUNKS = 8


def torch_step(cfg: BenchConfig, variant: str):
    """A callable doing one PyTorch training step of cfg's model; variant 'one-hot' or
    'embedding' (see the module docstring)."""
    V, H, B, T = cfg.V, cfg.H, cfg.B, cfg.T
    torch.manual_seed(0)
    embed = torch.nn.Embedding(V, H) if variant == "embedding" else None
    rnn = torch.nn.RNN(H if embed is not None else V, H, nonlinearity="tanh", batch_first=True)
    head = torch.nn.Linear(H, V)
    params = [*rnn.parameters(), *head.parameters(), *(embed.parameters() if embed else [])]
    opt = torch.optim.Adam(params, lr=_measure.ADAM_LR)
    rng = np.random.default_rng(1)
    xs = torch.from_numpy(rng.integers(0, V, (CHUNKS, B, T)))
    ys = torch.from_numpy(rng.integers(0, V, (CHUNKS, B, T)))
    h0 = torch.zeros(1, B, H)
    count = [0]

    def step() -> None:
        k = count[0] % CHUNKS
        count[0] += 1
        opt.zero_grad(set_to_none=False)
        x = embed(xs[k]) if embed is not None else torch.nn.functional.one_hot(xs[k], V).float()
        out, _ = rnn(x, h0)
        loss = torch.nn.functional.cross_entropy(head(out).reshape(-1, V), ys[k].reshape(-1))
        loss.backward()
        for p in params:
            p.grad.clamp_(-_measure.GRAD_CLIP, _measure.GRAD_CLIP)
        opt.step()

    return step


def compare(cfg: BenchConfig, rounds: int = 7, round_seconds: float = 0.4) -> dict[str, float]:
    """Best chars/s of fastrnn's kernel step and of both PyTorch variants, alternating."""
    steps = {
        "fastrnn": _measure.TrainingStep(cfg, "kernel"),
        "torch one-hot": torch_step(cfg, "one-hot"),
        "torch embedding": torch_step(cfg, "embedding"),
    }
    for step in steps.values():
        step()  # warm-up
    best = dict.fromkeys(steps, 0.0)
    names = list(steps)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < round_seconds:
                steps[name]()
                n += 1
            best[name] = max(best[name], n * cfg.chars_per_step / (time.perf_counter() - t0))
    return best


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default="S,M,L,CJK", help="configurations (default S,M,L,CJK)")
    args = p.parse_args()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        print(
            f"PyTorch {torch.__version__}, 1 thread; {_measure.describe_blas(_measure.blas_info())}"
        )
        print(
            f"{'config':8} {'fastrnn':>12} {'torch one-hot':>14} {'torch embedding':>16}  "
            "fastrnn / torch (one-hot, embedding)"
        )
        for name in args.only.split(","):
            cfg = CONFIGS[name.strip()]
            r = compare(cfg)
            print(
                f"{cfg.name:8} {r['fastrnn']:12,.0f} {r['torch one-hot']:14,.0f} "
                f"{r['torch embedding']:16,.0f}  {r['fastrnn'] / r['torch one-hot']:.2f}, "
                f"{r['fastrnn'] / r['torch embedding']:.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
