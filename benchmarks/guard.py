"""Speed guard: kernel vs numpy reference and fraction of the GEMM limit, against committed floors.

    python benchmarks/guard.py                 # all configurations, 1-4 minutes on 2 cores
    python benchmarks/guard.py --quick         # fewer, shorter rounds
    python benchmarks/guard.py --only S,L --json guard.json

For each named configuration (benchmarks/_configs.py) the kernel and the numpy reference each
run one training step (loss_and_grads + the clipped Adam update) in rounds that alternate
between them; the ratio is the median of the per-round ratios and chars/s the best round of
each. The fraction of the limit is kernel chars/s * FLOPs/char / GEMM FLOP/s, the GEMM measured
in this same run with the same dtype and thread count, in the same alternating rounds. A
configuration below a floor of benchmarks/floors.json is measured once more and fails only if it
is below again; then the guard exits 1. Every configuration is also measured at 2 threads (the
kernel's step alternating with a 2-thread GEMM), reported beside it with its fraction of the
2-thread limit, for information. A step runs on the threads a run given that count uses
(train.step_threads): one where its recurrence is too small to share, marked "(uses 1)".

Busy neighbour: at M, L and LSTM-L (_configs.BUSY_NEIGHBOUR_CONFIGS), while a process of ours
spins on one core, the kernel at 2 threads against 1 thread, and 1 thread without the
neighbour, in alternating rounds; the ratio 2-thread / 1-thread chars/s beside the neighbour is
judged against floors.json's 'busy_neighbour' ratio, which fails the guard only where
'enforced' is true (information otherwise). The neighbour's cost to one thread (1 thread beside
it / alone) is printed beside it: on a virtual machine whose CPUs share physical cores it is
far from 1, and it is the same whatever the thread count.

It also prints the tracemalloc peak of one training step at L and CJK against the memory bound
of _configs.memory_bound_bytes (kernel checked, reference for information) and, where
CharRNN.generate exists, the characters/s of generation, kernel and reference, and of the
compiled loop for every cell and N streams with the ratio to one stream (for information).
It never changes OPENBLAS_* variables: for a report run it as

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/guard.py
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _configs import (  # noqa: E402
    BUSY_NEIGHBOUR_CONFIGS,
    CONFIGS,
    MEMORY_CONFIGS,
    SAMPLING_CONFIGS,
    SCRATCH_BH,
    STREAM_CONFIGS,
    BenchConfig,
    fraction_of_limit,
    memory_bound_bytes,
    one_stream_partner,
    select,
)

FLOORS_PATH = Path(__file__).resolve().parent / "floors.json"
TWO_THREADS = 2  # the second thread count every configuration is reported at
# numpy's OpenBLAS loads before fastrnn sets OPENBLAS_THREAD_TIMEOUT for the kernel's, so its
# worker threads spin for about 0.1 s (2^28 cycles) after each product before they sleep: at 2
# threads they took a core from the round after the reference's (the GEMM limit measured 150
# GFLOP/s instead of 185). The reference's rounds at more than one thread are followed by this
# pause, outside the clock.
NUMPY_BLAS_SETTLE_SECONDS = 0.25


# ------------------------------------------------------------------------- floors and verdicts


def load_floors(path: Path = FLOORS_PATH) -> dict:
    """floors.json: {'configs': {NAME: {'ratio', 'fraction', 'target_ratio', 'target_fraction'}},
    'memory_bound_factor': f, 'busy_neighbour': {'ratio', 'enforced', 'target_ratio'}}. Every
    configuration of CONFIGS must have a ratio and fraction floor; the busy-neighbour section
    runs only when 'busy_neighbour' is there, its ratio fails the guard only when 'enforced' is
    true, and its optional target is printed for information."""
    floors = json.loads(Path(path).read_text())
    for name in CONFIGS:
        entry = floors.get("configs", {}).get(name)
        if entry is None or "ratio" not in entry or "fraction" not in entry:
            raise ValueError(
                f"{path}: configuration {name!r} needs a 'ratio' and a 'fraction' floor"
            )
    busy = floors.get("busy_neighbour")
    if busy is not None and (
        not isinstance(busy.get("ratio"), (int, float))
        or not isinstance(busy.get("enforced"), bool)
        or not isinstance(busy.get("target_ratio", 0.0), (int, float))
    ):
        raise ValueError(
            f"{path}: 'busy_neighbour' needs a numeric 'ratio' and a true/false 'enforced', "
            f"got {busy!r}"
        )
    return floors


def below_floor(result: dict, floor: dict) -> list[str]:
    """What of result falls below floor: [] when it passes, else e.g. ['ratio 1.02 < 2.5']."""
    misses = []
    if result["ratio"] < floor["ratio"]:
        misses.append(f"ratio {result['ratio']:.2f} < {floor['ratio']}")
    if result["fraction"] < floor["fraction"]:
        misses.append(f"fraction {result['fraction']:.3f} < {floor['fraction']}")
    return misses


def meets_target(result: dict, floor: dict) -> bool | None:
    """Whether result reaches its speed target: the target fraction, and the target ratio
    where floors.json gives one (None when it gives no target)."""
    if "target_fraction" not in floor:
        return None
    return (
        result["ratio"] >= floor.get("target_ratio", 0)
        and result["fraction"] >= floor["target_fraction"]
    )


def memory_verdict(peak: int, bound: int, factor: float) -> str:
    return "ok" if peak <= factor * bound else "FAIL"


# ------------------------------------------------------------------------- tables


def _si(x: float) -> str:
    """12345678 -> '12.3M', 45678 -> '45.7k'."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{suffix}" if x / scale < 100 else f"{x / scale:.0f}{suffix}"
    return f"{x:.3g}"


def format_table(header: list[str], rows: list[list[str]]) -> str:
    """A plain fixed-width table: columns as wide as their widest cell, numbers right-aligned."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]

    def line(cells):
        return "  ".join(
            str(c).rjust(w) if _numeric(c) else str(c).ljust(w) for c, w in zip(cells, widths)
        ).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _numeric(cell) -> bool:
    s = str(cell).rstrip("kMGx%")
    try:
        float(s)
    except ValueError:
        return False
    return True


SPEED_HEADER = [
    "name",
    "V",
    "H",
    "B",
    "T",
    "threads",
    "dtype",
    "kernel chars/s",
    "numpy chars/s",
    "ratio",
    "limit GFLOP/s",
    "fraction",
    "2 threads chars/s",
    "2 threads fraction",
    "floor (ratio, fraction)",
    "target",
    "verdict",
]


def speed_row(r: dict) -> list[str]:
    c, f = r["config"], r["floor"]
    target = {True: "met", False: "not met", None: "-"}[r["meets_target"]]
    ratio_txt = f"x{f['target_ratio']}, " if "target_ratio" in f else ""
    target_txt = (
        f"{target} ({ratio_txt}{f['target_fraction']})" if r["meets_target"] is not None else "-"
    )
    return [
        c["name"],
        c["V"],
        c["H"],
        c["B"],
        c["T"],
        c["threads"],
        c["dtype"],
        _si(r["kernel_chars_per_s"]),
        _si(r["numpy_chars_per_s"]),
        f"{r['ratio']:.2f}",
        f"{r['gemm_flops_per_s'] / 1e9:.0f}",
        f"{r['fraction']:.3f}",
        _si(r["two_threads_chars_per_s"]) + r.get("two_threads_note", ""),
        f"{r['two_threads_fraction']:.3f}",
        f"x{f['ratio']}, {f['fraction']}",
        target_txt,
        r["verdict"],
    ]


# ------------------------------------------------------------------------- measuring


def interleaved_steps(
    cfg: BenchConfig,
    backends: tuple[str, ...],
    rounds: int,
    round_seconds: float,
    max_seconds: float,
) -> tuple[dict[str, list[float]], int, list[dict]]:
    """Under a thread limit of cfg.threads (the BLAS and the kernel's recurrences): rounds that
    alternate the training step of each backend and one GEMM of cfg's dtype (the limit).
    Returns (rates per round by name, training steps per round, the BLAS in use)."""
    import _measure
    from fastrnn.train import limit_threads

    used = cfg.threads_used(cfg.threads)
    settings = {}
    if used != cfg.threads:  # the kernel's step on the threads a run given cfg.threads uses
        settings["kernel"] = lambda: limit_threads(used)
    if cfg.threads > 1 and "numpy" in backends:
        settings["numpy"] = lambda: _measure.settling(NUMPY_BLAS_SETTLE_SECONDS)
    with limit_threads(cfg.threads):
        train = {b: _measure.TrainingStep(cfg, b) for b in backends}
        n = _measure.steps_per_round(list(train.values()), round_seconds)
        gemm = _measure.GemmStep(cfg.dtype)
        gemm()  # warm-up: threads started, pages touched
        steps = {b: (s, cfg.chars_per_step, n) for b, s in train.items()}
        steps["gemm"] = (gemm, gemm.flops, 1)
        rates = _measure.interleaved_rates(
            steps, rounds, max_seconds=max_seconds, settings=settings
        )
        blas = _measure.blas_info()
    return rates, n, blas


def measure_config(cfg: BenchConfig, rounds: int, round_seconds: float, max_seconds: float) -> dict:
    """One configuration under a thread limit of cfg.threads: rounds that alternate the
    kernel's training step, the reference's and one GEMM of the same dtype (the limit)."""
    import _measure

    rates, n, blas = interleaved_steps(cfg, _measure.BACKENDS, rounds, round_seconds, max_seconds)
    return {
        "config": {
            "name": cfg.name,
            "V": cfg.V,
            "H": cfg.H,
            "B": cfg.B,
            "T": cfg.T,
            "threads": cfg.threads,
            "dtype": cfg.dtype,
        },
        **_measure.summarize_rounds(rates["kernel"], rates["numpy"]),
        "flops_per_char": cfg.flops_per_char,
        "gemm_in_rounds_flops_per_s": max(rates["gemm"]),
        "steps_per_round": n,
        "rounds": len(rates["gemm"]),
        "blas": blas,
        "rates_per_round": rates,
    }


def measure_two_threads(
    cfg: BenchConfig, rounds: int, round_seconds: float, max_seconds: float
) -> dict:
    """cfg's kernel training step at 2 threads, alternating with a 2-thread GEMM of its dtype:
    best chars/s and best GEMM FLOP/s (information beside the verdict of cfg.threads)."""
    two = dataclasses.replace(cfg, threads=TWO_THREADS)
    rates, _, _ = interleaved_steps(two, ("kernel",), rounds, round_seconds, max_seconds)
    return {
        "kernel_chars_per_s": max(rates["kernel"]),
        "gemm_in_rounds_flops_per_s": max(rates["gemm"]),
    }


def uses_fewer(cfg: BenchConfig, threads: int) -> str:
    """' (uses N)' when a run of cfg given `threads` uses fewer, else ''."""
    used = cfg.threads_used(threads)
    return f" (uses {used})" if used != threads else ""


def limit_key(cfg: BenchConfig) -> tuple[str, int]:
    return (cfg.dtype, cfg.threads)


def add_fractions(r: dict, cfg: BenchConfig, gemm_flops_per_s: float) -> dict:
    """r with the GEMM limit and the fractions of it of kernel and reference."""
    r.update(
        gemm_flops_per_s=gemm_flops_per_s,
        fraction=fraction_of_limit(r["kernel_chars_per_s"], cfg.flops_per_char, gemm_flops_per_s),
        numpy_fraction=fraction_of_limit(
            r["numpy_chars_per_s"], cfg.flops_per_char, gemm_flops_per_s
        ),
    )
    return r


def add_two_thread_fraction(
    r: dict, cfg: BenchConfig, chars_per_s: float, best_gemm: dict[tuple[str, int], float]
) -> dict:
    """r with the kernel's chars/s at TWO_THREADS and its fraction of the 2-thread GEMM limit
    of cfg's dtype (information: no floor)."""
    r.update(
        two_threads_chars_per_s=chars_per_s,
        two_threads_fraction=fraction_of_limit(
            chars_per_s, cfg.flops_per_char, best_gemm[(cfg.dtype, TWO_THREADS)]
        ),
    )
    return r


def run_speed(
    configs: list[BenchConfig], floors: dict, rounds: int, round_seconds: float, max_seconds: float
) -> list[dict]:
    """Measure every configuration, then judge each against its floors with the limit of its
    (dtype, threads) taken as the best GEMM round of the whole run: the machine's peak does
    not change between configurations, and a GEMM round disturbed by another process would
    otherwise make a fraction look better than it is. Each configuration is also measured at
    TWO_THREADS (unless that is its own count), for information, beside a 2-thread GEMM."""
    best_gemm: dict[tuple[str, int], float] = {}

    def measure(cfg: BenchConfig, extra_rounds: int = 0, time_factor: float = 1.0) -> dict:
        t0 = time.perf_counter()
        r = measure_config(cfg, rounds + extra_rounds, round_seconds, time_factor * max_seconds)
        key = limit_key(cfg)
        best_gemm[key] = max(best_gemm.get(key, 0.0), r["gemm_in_rounds_flops_per_s"])
        print(
            f"  {cfg.name}: kernel {_si(r['kernel_chars_per_s'])} chars/s, numpy "
            f"{_si(r['numpy_chars_per_s'])} chars/s, ratio {r['ratio']:.2f} "
            f"({r['rounds']} rounds, {time.perf_counter() - t0:.1f} s)",
            flush=True,
        )
        return r

    def measure_at_two_threads(cfg: BenchConfig) -> float:
        t0 = time.perf_counter()
        two = measure_two_threads(cfg, rounds, round_seconds, max_seconds / 2)
        key = (cfg.dtype, TWO_THREADS)
        best_gemm[key] = max(best_gemm.get(key, 0.0), two["gemm_in_rounds_flops_per_s"])
        print(
            f"  {cfg.name} at {TWO_THREADS} threads{uses_fewer(cfg, TWO_THREADS)}: kernel "
            f"{_si(two['kernel_chars_per_s'])} chars/s ({time.perf_counter() - t0:.1f} s)",
            flush=True,
        )
        return two["kernel_chars_per_s"]

    measured = []
    for cfg in configs:
        r = measure(cfg)
        two = measure_at_two_threads(cfg) if cfg.threads != TWO_THREADS else None
        measured.append((cfg, r, two))
    results = []
    for cfg, r, two in measured:
        floor = floors["configs"][cfg.name]
        add_fractions(r, cfg, best_gemm[limit_key(cfg)])
        misses = below_floor(r, floor)
        if misses:  # one more, longer look before calling it a regression
            print(f"  {cfg.name}: {'; '.join(misses)}; measuring again", flush=True)
            r = measure(cfg, extra_rounds=2, time_factor=2.0)
            add_fractions(r, cfg, best_gemm[limit_key(cfg)])
            misses = below_floor(r, floor)
        add_two_thread_fraction(r, cfg, r["kernel_chars_per_s"] if two is None else two, best_gemm)
        r["two_threads_note"] = uses_fewer(cfg, TWO_THREADS)
        r.update(
            floor=floor,
            misses=misses,
            meets_target=meets_target(r, floor),
            verdict="FAIL" if misses else "ok",
        )
        results.append(r)
    return results


def measure_beside_busy(
    cfg: BenchConfig, rounds: int, round_seconds: float, max_seconds: float
) -> dict:
    """cfg's kernel training step beside a busy neighbour (a process of ours spinning on one
    core) at one thread and at TWO_THREADS (as many as a run given them uses), and at one
    thread on its own, in alternating rounds; the neighbour runs during the rounds beside it
    only. Best chars/s of each, and medians of paired per-round ratios: 'ratio', 2 threads
    / 1 thread, both beside the neighbour (what a second thread gains or loses while another
    program holds a core), and 'neighbour_cost', 1 thread beside it / 1 thread alone (what the
    neighbour takes from one thread: nothing on two real cores; on a virtual machine whose two
    CPUs share a physical core, much)."""
    import _measure
    from fastrnn.train import limit_threads

    two = cfg.threads_used(TWO_THREADS)
    with _measure.BusyNeighbour() as busy:

        def beside_busy(threads: int):
            @contextlib.contextmanager
            def setting():
                with limit_threads(threads), busy.spinning():
                    yield

            return setting

        settings = {
            "alone": lambda: limit_threads(1),
            "1 beside busy": beside_busy(1),
            "2 beside busy": beside_busy(two),
        }
        steps, calls = {}, []
        for name, threads in (("alone", 1), ("1 beside busy", 1), ("2 beside busy", two)):
            steps[name] = _measure.TrainingStep(dataclasses.replace(cfg, threads=threads), "kernel")
            with settings[name]():  # calibrated in its own setting: the slowest one decides
                calls.append(_measure.steps_per_round([steps[name]], round_seconds))
        n = min(calls)
        rates = _measure.interleaved_rates(
            {name: (step, cfg.chars_per_step, n) for name, step in steps.items()},
            rounds,
            max_seconds=max_seconds,
            settings=settings,
        )
    return {
        "name": cfg.name,
        "alone_chars_per_s": max(rates["alone"]),
        "one_beside_busy_chars_per_s": max(rates["1 beside busy"]),
        "beside_busy_chars_per_s": max(rates["2 beside busy"]),
        "ratio": _measure.paired_ratio(rates["2 beside busy"], rates["1 beside busy"]),
        "neighbour_cost": _measure.paired_ratio(rates["1 beside busy"], rates["alone"]),
        "rounds": len(rates["alone"]),
        "rates_per_round": rates,
    }


def run_busy_neighbour(
    configs: list[BenchConfig], floor: dict, rounds: int, round_seconds: float, max_seconds: float
) -> list[dict]:
    """measure_beside_busy for each configuration, judged against floor['ratio']: when
    floor['enforced'], one below it is measured once more, longer, and fails if below again;
    otherwise the verdict is information ('info')."""
    results = []
    for cfg in configs:
        r = measure_beside_busy(cfg, rounds, round_seconds, max_seconds)
        if floor["enforced"] and r["ratio"] < floor["ratio"]:
            print(f"  {cfg.name} beside a busy core: ratio {r['ratio']:.2f}; measuring again")
            r = measure_beside_busy(cfg, rounds + 2, round_seconds, 2 * max_seconds)
        below = r["ratio"] < floor["ratio"]
        verdict = ("FAIL" if below else "ok") if floor["enforced"] else "info"
        target = floor.get("target_ratio")
        r.update(
            floor=floor["ratio"],
            below=below,
            verdict=verdict,
            note=uses_fewer(cfg, TWO_THREADS),
            target=target,
            meets_target=None if target is None else r["ratio"] >= target,
        )
        print(
            f"  {cfg.name} beside a busy core: 1 thread {_si(r['one_beside_busy_chars_per_s'])} "
            f"chars/s, {TWO_THREADS} threads{uses_fewer(cfg, TWO_THREADS)} "
            f"{_si(r['beside_busy_chars_per_s'])} chars/s, ratio {r['ratio']:.2f}; 1 thread "
            f"alone {_si(r['alone_chars_per_s'])} chars/s ({r['rounds']} rounds)",
            flush=True,
        )
        results.append(r)
    return results


def run_memory(configs: list[BenchConfig], factor: float) -> list[dict]:
    import numpy as np

    import _measure

    results = []
    for cfg in configs:
        bound = memory_bound_bytes(cfg, np.dtype(cfg.dtype).itemsize)
        for backend in _measure.BACKENDS:
            peaks = _measure.training_step_peak(cfg, backend)
            checked = backend == "kernel"
            results.append(
                {
                    "name": cfg.name,
                    "backend": backend,
                    "bound_bytes": bound,
                    "first_bytes": peaks["first"],
                    "steady_bytes": peaks["steady"],
                    "verdict": memory_verdict(peaks["first"], bound, factor) if checked else "info",
                }
            )
    return results


def run_probes(floors: dict) -> list[dict]:
    """The kernel's vectorised tanh against numpy's, per dtype, with the committed floor; and
    the fixed (Python) cost of a training step at S against its committed ceiling."""
    from threadpoolctl import threadpool_limits

    import _measure

    results = []
    ceiling = floors.get("fixed_cost_ceiling")
    if ceiling is not None:
        with threadpool_limits(1):
            fixed, fraction = _measure.fixed_cost_fraction(CONFIGS["S"])
        results.append(
            {
                "name": f"fixed cost at S ({fixed * 1e6:.1f} us)",
                "kernel": fraction,
                "numpy": None,
                "ratio": fraction,
                "floor": f"<= {ceiling}",
                "verdict": "ok" if fraction <= ceiling else "FAIL",
            }
        )
    for B, H in ((1, 100), (32, 512)):
        packed, blas = _measure.recurrent_step_seconds(B, H)
        results.append(
            {
                "name": f"recurrent step B={B} H={H} ({packed * 1e6:.2f} us, "
                f"OpenBLAS {blas * 1e6:.2f} us, {_recurrent_isa()})",
                "kernel": 1 / packed,
                "numpy": 1 / blas,
                "ratio": blas / packed,
                "floor": "-",
                "verdict": "info",
            }
        )
    for dtype, floor in floors.get("probes", {}).items():
        kernel, reference = _measure.tanh_throughputs(dtype)
        ratio = kernel / reference
        results.append(
            {
                "name": f"tanh {dtype}",
                "kernel": kernel,
                "numpy": reference,
                "ratio": ratio,
                "floor": floor,
                "verdict": "ok" if ratio >= floor else "FAIL",
            }
        )
    return results


def _recurrent_isa() -> str:
    from fastrnn import _kernel

    return _kernel.recurrent_isa()


def run_sampling(quick: bool) -> list[dict] | None:
    """chars/s of CharRNN.generate, kernel and numpy backends, one thread, without and with
    top-k; None when CharRNN has no generate."""
    from threadpoolctl import threadpool_limits

    import _measure

    if not _measure.has_generate():
        return None
    results = []
    with threadpool_limits(1):
        for name, V, H, target in SAMPLING_CONFIGS:
            for top_k in (None, 10):
                rates = {
                    b: _measure.sampling_rate(
                        V,
                        H,
                        top_k=top_k,
                        backend=b,
                        repeats=2 if quick else 3,
                        call_seconds=0.03 if quick else 0.06,
                    )
                    for b in _measure.BACKENDS
                }
                results.append(
                    {
                        "name": name,
                        "V": V,
                        "H": H,
                        "top_k": top_k,
                        "kernel_chars_per_s": rates["kernel"],
                        "numpy_chars_per_s": rates["numpy"],
                        "target": target,
                        "meets_target": rates["kernel"] >= target,
                    }
                )
    return results


def run_stream_sampling(quick: bool) -> list[dict] | None:
    """chars/s over all streams of the compiled generation loop at STREAM_CONFIGS (kernel,
    float32, one thread) in alternating rounds; for N > 1 streams also the median per-round
    ratio to the one-stream configuration of the same model. None when CharRNN has no
    generate."""
    from threadpoolctl import threadpool_limits

    import _measure

    if not _measure.has_generate():
        return None
    rounds, round_seconds = (3, 0.05) if quick else (5, 0.1)
    with threadpool_limits(1):
        rates = _measure.stream_sampling_rates(STREAM_CONFIGS, rounds, round_seconds)
    results = []
    for cfg in STREAM_CONFIGS:
        partner = one_stream_partner(cfg)
        ratio = (
            _measure.paired_ratio(rates[cfg.name], rates[partner.name])
            if partner is not None
            else None
        )
        best = max(rates[cfg.name])
        results.append(
            {
                "name": cfg.name,
                "cell": cfg.cell,
                "V": cfg.V,
                "H": cfg.H,
                "streams": cfg.streams,
                "kernel_chars_per_s": best,
                "ratio_to_one_stream": ratio,
                "target": cfg.target,
                "meets_target": best >= cfg.target,
                "rates_per_round": rates[cfg.name],
            }
        )
    return results


def stream_sampling_table(rows: list[dict]) -> str:
    return format_table(
        ["name", "cell", "V", "H", "streams", "kernel chars/s", "x one stream", "target", "met"],
        [
            [
                s["name"],
                s["cell"],
                s["V"],
                s["H"],
                s["streams"],
                _si(s["kernel_chars_per_s"]),
                "-" if s["ratio_to_one_stream"] is None else f"{s['ratio_to_one_stream']:.2f}",
                _si(s["target"]),
                "yes" if s["meets_target"] else "no",
            ]
            for s in rows
        ],
    )


def busy_neighbour_section(
    configs: list[BenchConfig], floor: dict, rounds: int, round_seconds: float, max_seconds: float
) -> list[dict]:
    """Run and print the busy-neighbour comparison (run_busy_neighbour) of configs."""
    import _measure

    if not _measure.BusyNeighbour.available():
        print("\nBusy neighbour: needs SIGSTOP/SIGCONT (POSIX), not measured")
        return []
    enforced = "a floor" if floor["enforced"] else "information, not enforced"
    print(
        f"\nBusy neighbour: while a process of ours spins on one core, the kernel at "
        f"{TWO_THREADS} threads (as many as a run given {TWO_THREADS} uses: 1 where a recurrent "
        f"step is too small to share) against 1 thread, and 1 thread without the neighbour "
        f"(alternating rounds; ratio = median of per-round {TWO_THREADS}-thread / 1-thread "
        f"chars/s beside it, {floor['ratio']} is {enforced}; neighbour's cost = 1 thread "
        f"beside it / alone)",
        flush=True,
    )
    busy = run_busy_neighbour(configs, floor, rounds, round_seconds, max_seconds)
    print(
        format_table(
            [
                "name",
                "1 thread beside busy chars/s",
                f"{TWO_THREADS} threads beside busy chars/s",
                "ratio",
                "floor",
                "target",
                "1 thread alone chars/s",
                "neighbour's cost",
                "verdict",
            ],
            [
                [
                    b["name"],
                    _si(b["one_beside_busy_chars_per_s"]),
                    _si(b["beside_busy_chars_per_s"]) + b["note"],
                    f"{b['ratio']:.2f}",
                    b["floor"],
                    "-"
                    if b["target"] is None
                    else f"{'met' if b['meets_target'] else 'not met'} ({b['target']})",
                    _si(b["alone_chars_per_s"]),
                    f"{b['neighbour_cost']:.2f}",
                    b["verdict"] + (" (below)" if b["verdict"] == "info" and b["below"] else ""),
                ]
                for b in busy
            ],
        )
    )
    return busy


# ------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="fewer and shorter rounds (about half the time, a little noisier)",
    )
    p.add_argument(
        "--only",
        default=None,
        metavar="NAMES",
        help=f"comma-separated configurations to measure (of {','.join(CONFIGS)})",
    )
    p.add_argument("--json", default=None, metavar="PATH", help="also write all results here")
    p.add_argument(
        "--floors",
        default=str(FLOORS_PATH),
        metavar="PATH",
        help="floors file (default: benchmarks/floors.json)",
    )
    p.add_argument("--no-memory", action="store_true", help="skip the tracemalloc peaks")
    p.add_argument("--no-sampling", action="store_true", help="skip the generation speed")
    p.add_argument(
        "--no-busy",
        action="store_true",
        help="skip the 2-thread runs beside a busy neighbour (a process spinning on one core)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    try:
        configs = select(names)
    except ValueError as exc:
        print(f"guard: {exc}", file=sys.stderr)
        return 2
    floors = load_floors(Path(args.floors))
    # rounds, seconds per backend per round, seconds after which a configuration stops
    # adding rounds (past its first three)
    rounds, round_seconds, max_seconds = (5, 0.05, 3.0) if args.quick else (7, 0.1, 6.0)

    import _measure  # imports fastrnn (and both OpenBLAS copies) before any thread limit

    t_start = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS")}
    cpu = platform.processor() or platform.machine()
    print(
        f"fastrnn {_measure.fastrnn.__version__} guard on {cpu}, "
        f"{os.cpu_count()} cpus; OPENBLAS variables: "
        f"{', '.join(f'{k}={v}' for k, v in env.items()) or 'none set'}",
        flush=True,
    )
    speed = run_speed(configs, floors, rounds, round_seconds, max_seconds)

    print("\nBLAS in use (threads as set for the configuration):")
    seen = set()
    for r in speed:
        line = _measure.describe_blas(r["blas"])
        if line not in seen:
            seen.add(line)
            print(f"  {line}")
    print(
        f"limit: GFLOP/s of an n={_measure.GEMM_N} GEMM in scipy's OpenBLAS, best round of "
        "the run for the same dtype and threads; fraction = kernel chars/s * FLOPs/char "
        "(6(G*H*H*(2L-1)+H*V)) / limit; the 2 threads columns: the kernel at 2 threads and "
        "its fraction of the 2-thread limit of its dtype (information, no floor)"
    )
    print()
    print(format_table(SPEED_HEADER, [speed_row(r) for r in speed]))
    ok = all(r["verdict"] == "ok" for r in speed)

    probes = run_probes(floors)
    if probes:
        print(
            "\nDesign probes: the share of a training step at S spent outside compiled code "
            "(validation, dispatch, the optimizer's Python), one step of the recurrence "
            "(steps/s: the packed recurrent product against the OpenBLAS call it replaces, "
            "for information), and the kernel's vectorised tanh "
            f"against numpy's (SIMD) tanh on {_measure.TANH_PROBE_SIZE} values (a scalar libm "
            "loop would be a few percent)"
        )
        print(
            format_table(
                ["probe", "kernel", "numpy", "ratio", "floor", "verdict"],
                [
                    [
                        p["name"],
                        _si(p["kernel"]) if p["numpy"] else "-",
                        _si(p["numpy"]) if p["numpy"] else "-",
                        f"{p['ratio']:.2f}",
                        p["floor"],
                        p["verdict"],
                    ]
                    for p in probes
                ],
            )
        )
        ok = ok and all(p["verdict"] != "FAIL" for p in probes)

    busy = []
    busy_configs = [c for c in configs if c.name in BUSY_NEIGHBOUR_CONFIGS]
    if not args.no_busy and busy_configs and "busy_neighbour" in floors:
        busy = busy_neighbour_section(
            busy_configs, floors["busy_neighbour"], rounds, round_seconds, max_seconds
        )
        ok = ok and all(b["verdict"] != "FAIL" for b in busy)

    memory = []
    mem_configs = [c for c in configs if c.name in MEMORY_CONFIGS]
    if not args.no_memory and mem_configs:
        factor = float(floors.get("memory_bound_factor", 1.0))
        memory = run_memory(mem_configs, factor)
        print(
            f"\nMemory: tracemalloc peak of one training step (gradients returned) vs the "
            f"bound T*B*(2H+V) + params + {SCRATCH_BH}*B*H + packed Whh values "
            f"(x{factor} allowed)"
        )
        print(
            format_table(
                ["name", "backend", "first step", "steady step", "bound", "first/bound", "verdict"],
                [
                    [
                        m["name"],
                        m["backend"],
                        f"{m['first_bytes'] / 2**20:.1f} MiB",
                        f"{m['steady_bytes'] / 2**20:.1f} MiB",
                        f"{m['bound_bytes'] / 2**20:.1f} MiB",
                        f"{m['first_bytes'] / m['bound_bytes']:.2f}",
                        m["verdict"],
                    ]
                    for m in memory
                ],
            )
        )
        ok = ok and all(m["verdict"] != "FAIL" for m in memory)

    sampling = None
    if not args.no_sampling and names is None:
        sampling = run_sampling(args.quick)
        if sampling is None:
            print("\nSampling: CharRNN.generate does not exist, not measured")
        else:
            print(
                "\nSampling: CharRNN.generate, one stream, one thread, float32, temperature 1 "
                "(information, no floor)"
            )
            print(
                format_table(
                    [
                        "name",
                        "V",
                        "H",
                        "top_k",
                        "kernel chars/s",
                        "numpy chars/s",
                        "ratio",
                        "target",
                        "target met",
                    ],
                    [
                        [
                            s["name"],
                            s["V"],
                            s["H"],
                            s["top_k"] or "-",
                            _si(s["kernel_chars_per_s"]),
                            _si(s["numpy_chars_per_s"]),
                            f"{s['kernel_chars_per_s'] / s['numpy_chars_per_s']:.1f}",
                            _si(s["target"]),
                            "yes" if s["meets_target"] else "no",
                        ]
                        for s in sampling
                    ],
                )
            )

    streams = None
    if not args.no_sampling and names is None:
        streams = run_stream_sampling(args.quick)
        if streams is not None:
            print(
                "\nSampling streams: the compiled loop for every cell, N streams at once, "
                "float32, one thread, temperature 1; chars/s over all streams (best round), "
                "x one stream = median per-round ratio to the same model's one stream "
                "(information, no floor)"
            )
            print(stream_sampling_table(streams))

    elapsed = time.perf_counter() - t_start
    failed = [r["config"]["name"] + ": " + "; ".join(r["misses"]) for r in speed if r["misses"]]
    failed += [f"{m['name']} memory above bound" for m in memory if m["verdict"] == "FAIL"]
    failed += [f"{p['name']} below its floor" for p in probes if p["verdict"] == "FAIL"]
    failed += [
        f"{b['name']} beside a busy core below its floor" for b in busy if b["verdict"] == "FAIL"
    ]
    verdict = "PASS" if ok else "FAIL"
    print(f"\n{verdict} ({elapsed:.0f} s)" + ("" if ok else ": " + ", ".join(failed)))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "ok": ok,
                    "seconds": elapsed,
                    "openblas_env": env,
                    "speed": speed,
                    "memory": memory,
                    "sampling": sampling,
                    "sampling_streams": streams,
                    "probes": probes,
                    "busy_neighbour": busy,
                },
                indent=2,
                default=str,
            )
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
