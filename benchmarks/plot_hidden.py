"""Plot training speed (chars/s) against hidden size, kernel vs numpy reference.

    pip install -e ".[plot]"
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/plot_hidden.py \
        [--out benchmarks/hidden_size.png] [--hidden 32,64,...] [--threads 1]

V=65, B=32, T=64, float32 by default. Each point is the best of interleaved rounds of one
training step (loss_and_grads + the clipped Adam update), as in guard.py. The dashed line is the
FLOP limit: the GEMM rate of the same dtype and threads divided by 6*(H*H + H*V) FLOPs per
character.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from threadpoolctl import threadpool_limits  # noqa: E402

import _measure  # noqa: E402  (imports fastrnn: both OpenBLAS copies loaded before limits)
from _configs import PLOT_HIDDEN_SIZES, BenchConfig  # noqa: E402

OUT = Path(__file__).resolve().parent / "hidden_size.png"


def measure_hidden_sizes(
    base: BenchConfig, hidden_sizes: list[int], rounds: int = 5, round_seconds: float = 0.15
) -> tuple[list[dict], float, str]:
    """For each H: best chars/s of kernel and reference (interleaved rounds) and the limit
    (chars/s at the GEMM rate); also the GEMM FLOP/s and a line describing the BLAS."""
    with threadpool_limits(base.threads):
        gemm = _measure.gemm_rate(base.dtype, base.threads)
        points = []
        for H in hidden_sizes:
            cfg = replace(base, name=f"H{H}", H=H)
            train = {b: _measure.TrainingStep(cfg, b) for b in _measure.BACKENDS}
            n = _measure.steps_per_round(list(train.values()), round_seconds)
            rates = _measure.interleaved_rates(
                {b: (s, cfg.chars_per_step, n) for b, s in train.items()}, rounds
            )
            points.append(
                {
                    "H": H,
                    "kernel": max(rates["kernel"]),
                    "numpy": max(rates["numpy"]),
                    "limit": gemm / cfg.flops_per_char,
                }
            )
            print(
                f"H={H:5d}  kernel {points[-1]['kernel']:12,.0f}  numpy "
                f"{points[-1]['numpy']:12,.0f}  limit {points[-1]['limit']:12,.0f} chars/s",
                flush=True,
            )
        blas = _measure.describe_blas(_measure.blas_info())
    return points, gemm, blas


def plot(points: list[dict], base: BenchConfig, gemm: float, blas: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    H = [p["H"] for p in points]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    ax.plot(H, [p["kernel"] for p in points], "o-", label="fastrnn kernel")
    ax.plot(H, [p["numpy"] for p in points], "s-", label="numpy reference")
    ax.plot(
        H,
        [p["limit"] for p in points],
        "k--",
        lw=1,
        label=f"FLOP limit ({gemm / 1e9:.0f} GFLOP/s GEMM)",
    )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(H, [str(h) for h in H])
    ax.set_xlabel("hidden size H")
    ax.set_ylabel("training chars/s (loss, gradients, Adam)")
    ax.set_title(
        f"V={base.V}, B={base.B}, T={base.T}, {base.dtype}, {base.threads} thread(s)", fontsize=10
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.text(0.01, 0.01, blas, fontsize=6, color="0.4")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(out)
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(OUT), help="PNG to write (default: %(default)s)")
    p.add_argument(
        "--hidden",
        default=",".join(map(str, PLOT_HIDDEN_SIZES)),
        help="comma-separated hidden sizes (default: %(default)s)",
    )
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (default: 1)")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--json", default=None, metavar="PATH", help="also write the points here")
    args = p.parse_args(argv)
    base = BenchConfig("plot", V=65, H=0, B=32, T=64, threads=args.threads, dtype=args.dtype)
    hidden = [int(h) for h in args.hidden.split(",") if h.strip()]
    points, gemm, blas = measure_hidden_sizes(base, hidden)
    if args.json:
        Path(args.json).write_text(
            json.dumps({"points": points, "gemm_flops_per_s": gemm, "blas": blas}, indent=2)
        )
    plot(points, base, gemm, blas, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
