"""Command-line entry points: ``fastrnn-train``, ``fastrnn-sample``, ``fastrnn-info``, the tools
(``fastrnn-eval``, ``-plot``, ``-inspect``, ``-export``) and ``python -m fastrnn TOOL``.

Thin on purpose: parse flags, call the documented Python function that does the work, and turn
user errors (FastrnnError) into one line on stderr and the exit status of EXIT_RULE, never a
traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

from .config import DEFAULT_TIME_LIMIT, DEFAULTS, INIT_SCHEMES, TrainConfig
from .corpus import CACHE_MIN_BYTES
from .distributed import launcher_rank, launcher_size
from .errors import ConfigError, FastrnnError
from .model import BACKENDS, CELLS
from .optim import OPTIMIZERS
from .schedule import COSINE_FINAL_FRACTION, SCHEDULES

USAGE_ERROR = 2  # a bad flag or value: the command line is the thing to fix
FAILURE = 1  # the command was valid but the run failed (a file, a checkpoint, divergence)

EXIT_RULE = """\
Exit status: 0 done; 2 a usage error (an unknown flag, a bad value, options that contradict each
other or the checkpoint); 1 a failure while running (unreadable text or checkpoint, a file that
cannot be written, diverged training); 130 after Ctrl-C (SIGINT), 143 after SIGTERM."""

D = TrainConfig()  # defaults, shown in --help
ABORT_GRACE = 2.0  # seconds a failing MPI process other than rank 0 leaves rank 0 to report
# Seconds a failing MPI process waits between writing its error and ending the job: mpiexec
# forwards a process's stderr through a proxy that reads it from a pipe, and the abort can
# end the proxy before it has read the line (seen once, in a CI run on the debug build).
FORWARD_GRACE = 0.5


def why(name: str, shown: str | None = None) -> str:
    """'default VALUE: reason' of a model or optimization option, for --help."""
    return DEFAULTS[name].help(shown).replace("%", "%%")


# The classic numpy char-RNN configuration (min-char-rnn style): hidden 100, 40 steps, one
# stream, plain SGD at 0.01 with clipping at ±5 on the gradient of the summed loss.
CLASSIC_CONFIG = (
    "--model rnn --num-layers 1 --hidden-size 100 --embedding-size 0 "
    "--init uniform --seq-length 40 --batch-size 1 --optimizer sgd "
    "--learning-rate 0.4 --lr-schedule constant --grad-clip 0.125 --dtype float64"
)

TRAIN_EPILOG = f"""\
The classic numpy char-RNN configuration (hidden 100, 40 steps, one stream, SGD 0.01, clip ±5):
  fastrnn-train FILE {CLASSIC_CONFIG}
(that configuration applies lr 0.01 and clipping at ±5 to the gradient of the loss summed over
40 steps; fastrnn averages the loss over the B*T characters of a chunk, which divides the
gradient by 40, so the same update is lr 0.01 * 40 = 0.4 and clipping at 5 / 40 = 0.125).

Several processes train one model together under MPI (pip install 'fastrnn[mpi]'):
  mpiexec -n P fastrnn-train FILE ...   (each process takes its share of the B streams; B >= P)

{EXIT_RULE}
After a signal, the iteration is finished and the checkpoint written first."""


class _Parser(argparse.ArgumentParser):
    """Bad options give one line on stderr (no usage dump) and exit status 2. No prefix
    abbreviations (--temp is not --temperature), and a flag of another tool (char-rnn, torch-rnn,
    nanoGPT, a misspelling) gets a "did you mean" pointing at this tool's flag."""

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(**kwargs)

    def parse_args(self, args=None, namespace=None):
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            self.error(unrecognized_message(self, extras))
        return parsed

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def add_version(p: argparse.ArgumentParser) -> None:
    from . import __version__

    p.add_argument("--version", action="version", version=f"%(prog)s (fastrnn) {__version__}")


# ---------------------------------------------------------------------------- unknown flags

# Flags of char-rnn (-rnn_size), torch-rnn (-wordvec_size) and nanoGPT (--n_layer), and common
# spellings, after normalisation (no leading dashes, lower case, '_' -> '-'), with the fastrnn
# flags or arguments they mean, in order of preference; only those the parser has are offered.
FOREIGN_FLAGS: dict[str, tuple[str, ...]] = {
    "epochs": ("--max-epochs",),
    "num-epochs": ("--max-epochs",),
    "n-epochs": ("--max-epochs",),
    "iters": ("--max-iters",),
    "num-iters": ("--max-iters",),
    "max-steps": ("--max-iters",),
    "steps": ("--max-iters",),
    "max-time": ("--time-limit",),
    "time": ("--time-limit",),
    "rnn-size": ("--hidden-size",),
    "hidden": ("--hidden-size",),
    "hidden-dim": ("--hidden-size",),
    "n-hidden": ("--hidden-size",),
    "lr": ("--learning-rate",),
    "learning-rate-decay": ("--lr-decay",),
    "lr-decay-factor": ("--lr-decay",),
    "layers": ("--num-layers",),
    "n-layer": ("--num-layers",),
    "n-layers": ("--num-layers",),
    "model-type": ("--model",),
    "rnn-type": ("--model",),
    "cell-type": ("--model",),
    "cell": ("--cell", "--model"),
    "wordvec-size": ("--embedding-size",),
    "n-embd": ("--embedding-size",),
    "embed-size": ("--embedding-size",),
    "embedding-dim": ("--embedding-size",),
    "block-size": ("--seq-length",),
    "seq-len": ("--seq-length",),
    "bptt": ("--seq-length",),
    "train-frac": ("--val-fraction",),
    "val-frac": ("--val-fraction",),
    "clip": ("--grad-clip",),
    "clip-grad": ("--grad-clip",),
    "max-norm": ("--max-grad-norm",),
    "clip-norm": ("--max-grad-norm",),
    "num-threads": ("--threads",),
    "checkpoint-dir": ("--checkpoint",),
    "checkpoint-name": ("--checkpoint",),
    "savefile": ("--checkpoint",),
    "out-dir": ("--checkpoint",),
    "checkpoint": ("--checkpoint", "CHECKPOINT"),
    "model": ("--model", "CHECKPOINT"),
    "eval-val-every": ("--eval-every",),
    "eval-interval": ("--eval-every",),
    "checkpoint-every": ("--eval-every",),
    "input": ("TEXT_FILE",),
    "input-h5": ("TEXT_FILE",),
    "input-json": ("TEXT_FILE",),
    "data-dir": ("TEXT_FILE",),
    "data": ("TEXT_FILE",),
    "text": ("TEXT_FILE",),
    "log-file": ("--log",),
    "temp": ("--temperature",),
    "primetext": ("--prime",),
    "start-text": ("--prime",),
    "start": ("--prime",),
    "max-new-tokens": ("--length",),
    "num-chars": ("--length",),
    "sample": ("--greedy",),
    "argmax": ("--greedy",),
    "topk": ("--top-k",),
    "out": ("--output", "-o"),
}
GPU_FLAGS = ("gpu", "gpuid", "gpu-backend", "opencl", "device", "cuda")


def unrecognized_message(parser: argparse.ArgumentParser, extras: list[str]) -> str:
    """'unknown option --epochs; did you mean --max-epochs?' for the first flag in extras."""
    flags = [a for a in extras if a.startswith("-") and len(a) > 1]
    if not flags:
        return f"unrecognized arguments: {' '.join(extras)}"
    flag = flags[0].split("=", 1)[0]
    hint = suggest_flag(parser, flag)
    return f"unknown option {flag}" + (f"; {hint}" if hint else "; see --help")


def suggest_flag(parser: argparse.ArgumentParser, flag: str) -> str:
    """What the user probably meant by an unknown flag, or ''."""
    key = flag.lstrip("-").lower().replace("_", "-")
    options = sorted(o for a in parser._actions for o in a.option_strings)
    arguments = [a.metavar or a.dest for a in parser._actions if not a.option_strings]
    for candidate in (f"--{key}", *FOREIGN_FLAGS.get(key, ())):
        if candidate in options:
            return f"did you mean {candidate}?"
        if candidate in arguments:
            return f"did you mean the {candidate} argument (given without a flag)?"
    if key in GPU_FLAGS:
        threads = " (--threads sets its BLAS threads)" if "--threads" in options else ""
        return "fastrnn runs on the CPU" + threads
    prefixed = [o for o in options if o.startswith(flag) and o.startswith("--")]
    if flag.startswith("--") and len(prefixed) == 1:
        return f"did you mean {prefixed[0]}? (abbreviations are not accepted)"
    close = difflib.get_close_matches(f"--{key}", options, n=1, cutoff=0.75)
    if close:
        return f"did you mean {close[0]}?"
    return _other_tool(parser.prog, f"--{key}")


def _other_tool(prog: str, flag: str) -> str:
    """'--temperature is an option of fastrnn-sample' when the flag belongs to another tool."""
    for make_parser, _, _ in TOOLS.values():
        try:
            other = make_parser()
        except ImportError:  # a tool whose optional part is missing has no flags to offer
            continue
        if other.prog != prog and any(flag in a.option_strings for a in other._actions):
            return f"{flag} is an option of {other.prog}"
    return ""


# ---------------------------------------------------------------------------- value types


def _number(kind: Callable[[str], Any], test: Callable[[Any], bool], what: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    parse.__name__ = what
    return parse


positive_int = _number(int, lambda v: v >= 1, "a positive integer")
non_negative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
non_negative_float = _number(float, lambda v: v >= 0 and math.isfinite(v), "a number >= 0")
positive_float = _number(float, lambda v: v > 0 and math.isfinite(v), "a number > 0")
fraction = _number(float, lambda v: 0 <= v < 1, "a number in [0, 1)")
decay = _number(float, lambda v: 0 < v <= 1, "a number in (0, 1]")


# ---------------------------------------------------------------------------- fastrnn-train


def train_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="fastrnn-train",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a character-level RNN language model on a UTF-8 text file.",
        epilog=TRAIN_EPILOG,
        argument_default=None,
    )
    add_version(p)
    g = p.add_argument_group("data")
    g.add_argument(
        "text_file",
        nargs="*",
        metavar="TEXT_FILE",
        help="UTF-8 text to learn: one or more files or directories (the files under "
        "a directory in sorted order), joined in the order given; without it, "
        "the Python documentation that ships with every Python "
        "(pydoc_data.topics, ~465,000 characters)",
    )
    g.add_argument(
        "--batch-size",
        type=positive_int,
        metavar="B",
        help=f"parallel streams per chunk ({why('batch_size')})",
    )
    g.add_argument(
        "--seq-length",
        type=positive_int,
        metavar="T",
        help=f"steps per chunk ({why('seq_length')})",
    )
    g.add_argument(
        "--val-fraction",
        type=fraction,
        metavar="F",
        help=f"tail of the text held out for validation, in [0, 1) (default {D.val_fraction})",
    )
    g.add_argument(
        "--val-file",
        metavar="PATH",
        help="validate on this text instead of the tail of the training text",
    )
    g.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="keep the encoded corpus here (default: beside the text, as hidden "
        f".fastrnn-cache files, for texts of {CACHE_MIN_BYTES >> 20} MiB or more)",
    )
    g.add_argument(
        "--verify-cache",
        action="store_true",
        default=None,
        help="check the cached corpus against the sha256 of the text (reads it all)",
    )
    g = p.add_argument_group("model")
    g.add_argument(
        "--model", "--cell", dest="cell", choices=CELLS, help=f"recurrent cell ({why('cell')})"
    )
    g.add_argument(
        "--num-layers",
        type=positive_int,
        metavar="L",
        help=f"stacked recurrent layers ({why('num_layers')})",
    )
    g.add_argument(
        "--dropout",
        type=fraction,
        metavar="P",
        help=f"dropout between layers and before the output, while training only, "
        f"in [0, 1) ({why('dropout', f'{D.dropout:g}')})",
    )
    g.add_argument(
        "--hidden-size", type=positive_int, metavar="H", help=f"hidden units ({why('hidden_size')})"
    )
    g.add_argument(
        "--embedding-size",
        type=non_negative_int,
        metavar="E",
        help=f"an E-wide learned embedding of each character before the first "
        f"layer, 0 for one-hot input rows ({why('embedding_size')})",
    )
    g.add_argument(
        "--init",
        choices=tuple(INIT_SCHEMES),
        metavar="SCHEME",
        help=f"initialisation of the weights, one of {', '.join(INIT_SCHEMES)} ({why('init')})",
    )
    g.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        help=f"({why('dtype')}; fastrnn.CharRNN in Python defaults to float64, the "
        "exact reference that the tests compare against)",
    )
    g.add_argument("--seed", type=int, help=f"initial weights and sampling RNG (default {D.seed})")
    g = p.add_argument_group("optimization")
    g.add_argument("--optimizer", choices=OPTIMIZERS, help=f"({why('optimizer')})")
    g.add_argument(
        "--learning-rate",
        type=positive_float,
        metavar="LR",
        help=f"the base rate ({why('learning_rate', f'{D.learning_rate:g}')})",
    )
    g.add_argument(
        "--lr-schedule",
        choices=SCHEDULES,
        help="constant; step: x--lr-decay every --lr-decay-every iterations; "
        f"cosine: down to {COSINE_FINAL_FRACTION * 100:.0f}%% of the rate at the "
        "planned end of the run (from --max-iters/--max-epochs, else "
        "--time-limit); plateau: x--lr-decay when the validation loss has not "
        f"improved for --plateau-patience evaluations ({why('lr_schedule')}; "
        "--lr-decay < 1 alone means step)",
    )
    g.add_argument(
        "--warmup-iters",
        type=non_negative_int,
        metavar="N",
        help=f"raise the rate linearly from LR/N to LR over the first N iterations "
        f"({why('warmup_iters')})",
    )
    g.add_argument(
        "--lr-decay",
        type=decay,
        metavar="FACTOR",
        help=f"the factor of the step and plateau schedules (default {D.lr_decay:g}: no decay)",
    )
    g.add_argument(
        "--lr-decay-every",
        type=positive_int,
        metavar="N",
        help=f"iterations between steps of the step schedule (default {D.lr_decay_every})",
    )
    g.add_argument(
        "--plateau-patience",
        type=positive_int,
        metavar="N",
        help=f"evaluations without improvement before the plateau schedule lowers "
        f"the rate (default {D.plateau_patience})",
    )
    g.add_argument(
        "--grad-clip",
        type=non_negative_float,
        metavar="C",
        help=f"clip every gradient element to [-C, C], 0 for off "
        f"({why('grad_clip', f'{D.grad_clip:g}')})",
    )
    g.add_argument(
        "--max-grad-norm",
        type=non_negative_float,
        metavar="N",
        help="rescale the gradients when their global norm exceeds N (default 0: off)",
    )
    g = p.add_argument_group(
        "duration (the first limit reached ends the run; on --resume, a "
        "limit given is a new budget counted from the resume point)"
    )
    g.add_argument(
        "--max-iters",
        type=non_negative_int,
        metavar="N",
        help="stop after N iterations (on --resume: N more); 0 for no limit (default 0)",
    )
    g.add_argument(
        "--max-epochs",
        type=non_negative_float,
        metavar="E",
        help="stop after E passes over the text (on --resume: E more); 0 for no limit (default 0)",
    )
    g.add_argument(
        "--time-limit",
        type=non_negative_float,
        metavar="SECONDS",
        help="stop after this many seconds of training (on --resume: this many "
        "more; a resumed run without a new limit goes on counting to its own); "
        f"0 for none (default {DEFAULT_TIME_LIMIT:g} when no limit at all is "
        "given, which the model defaults are chosen for)",
    )
    g.add_argument(
        "--patience",
        type=non_negative_int,
        metavar="N",
        help="stop early when the validation loss has not improved for N "
        "evaluations (every --eval-every iterations); 0 for off (default 0)",
    )
    g = p.add_argument_group("checkpoints")
    g.add_argument(
        "--checkpoint",
        metavar="PATH",
        help=f"written every --eval-every iterations and at the end; the best "
        f"validation checkpoint goes beside it as NAME.best.npz "
        f"(default {D.checkpoint})",
    )
    g.add_argument(
        "--overwrite",
        action="store_true",
        default=None,
        help="let a new run replace an existing checkpoint of another run "
        "(to continue that run instead, use --resume)",
    )
    g.add_argument(
        "--resume",
        metavar="PATH",
        help="continue that run exactly, with its options and corpus (TEXT_FILE "
        "and --checkpoint default to the run's; the corpus is looked for "
        "where it was, then beside the checkpoint); sizes, --cell, --init, "
        "--val-fraction, --dtype, --seed and --optimizer cannot change. A run "
        "that reached its limit needs a new one (--max-iters N: N more)",
    )
    g.add_argument(
        "--init-from",
        metavar="PATH",
        help="start a new run from that checkpoint's weights (fine-tuning); the "
        "text may only use characters of its vocabulary (see --unknown-chars)",
    )
    g.add_argument(
        "--unknown-chars",
        choices=("error", "drop"),
        help="with --init-from or --resume, characters of the text outside the "
        "checkpoint's vocabulary: error names them, drop leaves them out and "
        f"says how many (default {D.unknown_chars})",
    )
    g.add_argument(
        "--eval-every",
        type=non_negative_int,
        metavar="N",
        help=f"validation loss, log line and checkpoint every N iterations "
        f"(default {D.eval_every}: every few seconds at the defaults)",
    )
    g = p.add_argument_group("output")
    g.add_argument(
        "--sample-every",
        type=non_negative_int,
        metavar="N",
        help=f"print a short sample every N iterations, 0 for never (default {D.sample_every})",
    )
    g.add_argument(
        "--sample-length",
        type=non_negative_int,
        metavar="N",
        help=f"characters per sample (default {D.sample_length})",
    )
    g.add_argument(
        "--log",
        metavar="PATH",
        help="append one JSON line per evaluation: iteration, smoothed train and "
        "validation loss in nats/char (train_loss, val_loss) and bits/char "
        "(train_bpc, val_bpc), learning rate, chars/s, training seconds",
    )
    g.add_argument(
        "--plot",
        action="store_true",
        default=None,
        help="after each evaluation, draw the loss curves beside the checkpoint "
        "(run.npz -> run.png) from the --log (default: run.jsonl); needs "
        "matplotlib (pip install 'fastrnn[plot]')",
    )
    g.add_argument(
        "--quiet", action="store_true", default=None, help="print only the final summary line"
    )
    g = p.add_argument_group("compute")
    g.add_argument(
        "--threads",
        type=non_negative_int,
        metavar="N",
        help=f"threads of the matrix products and the recurrences (default {D.threads}: one "
        "per half million multiply-adds of a recurrent step, B*G*H*H, up to the cores the run "
        "may use, 1 below a million and under MPI; the default LSTM gets 2 on 2 cores, 1.6x "
        "faster than 1). A count given is the most the run uses: 1 where a recurrent step "
        "has under a million multiply-adds, too few to share (a note says so). Beside one "
        "other busy process, 2 threads measured 0.71-1.0x of 1 thread there (README)",
    )
    g.add_argument(
        "--backend",
        choices=BACKENDS,
        help=f"compiled kernel or the numpy reference (default {D.backend})",
    )
    return p


def train_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options given on the command line (None = not given), as TrainConfig fields; only
    these override a resumed checkpoint's configuration."""
    return {k: v for k, v in vars(args).items() if v is not None and k != "text_file"}


def train_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of fastrnn-train; returns the exit status."""
    from .report import summary
    from .train import train

    args = train_parser().parse_args(argv)
    corpus = args.text_file[0] if len(args.text_file) == 1 else args.text_file or None
    options = train_options(args)
    try:
        result = train(corpus, **options)
    except (FastrnnError, ImportError) as exc:  # ImportError: the kernel is not built
        return _fail_job("fastrnn-train", exc)
    except KeyboardInterrupt:
        print(
            "fastrnn-train: interrupted before training started or a second time; "
            "stopped without writing a checkpoint",
            file=sys.stderr,
        )
        return 130
    except BrokenPipeError:
        _silence_stdout()
        print(
            "fastrnn-train: error: the output pipe was closed; stopped (checkpoints written "
            "so far are intact)",
            file=sys.stderr,
        )
        return 1
    if launcher_rank() != 0:  # under MPI, process 0 speaks for the job
        return result.exit_status
    if options.get("quiet"):  # the library's quiet prints nothing; the CLI's keeps the summary
        print(summary(result), flush=True)
    if result.stop_reason in ("sigint", "sigterm"):
        print(
            f"fastrnn-train: stopped by {result.stop_reason.upper()}; checkpoint saved to "
            f"{result.checkpoint}",
            file=sys.stderr,
        )
    return result.exit_status


def _fail_job(prog: str, exc: BaseException) -> int:
    """_fail, and under MPI end every process of the job (the others may be waiting for this
    one in a collective call; a process that merely exits leaves them waiting).

    Rank 0 reports and ends the job at once. Another rank waits ABORT_GRACE seconds first: an
    error that every process meets alike (a bad option, B < P, a divergence) is then reported
    once, by rank 0, while an error of its own (an unreadable file on its node) is reported by
    the process that met it."""
    if launcher_size() <= 1 or "mpi4py.MPI" not in sys.modules:
        return _fail(prog, exc)
    import time

    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    if comm.Get_rank() != 0:
        time.sleep(ABORT_GRACE)
    status = _fail(f"{prog} (process {comm.Get_rank()} of {comm.Get_size()})", exc)
    sys.stderr.flush()
    time.sleep(FORWARD_GRACE)
    comm.Abort(status)
    return status


def _fail(prog: str, exc: BaseException) -> int:
    """One line on stderr; the status says whose fault it is (EXIT_RULE)."""
    print(f"{prog}: error: {exc}", file=sys.stderr)
    return exit_status(exc)


def exit_status(exc: BaseException) -> int:
    """USAGE_ERROR for an invalid or contradictory option (ConfigError), FAILURE otherwise."""
    return USAGE_ERROR if isinstance(exc, ConfigError) else FAILURE


# ---------------------------------------------------------------------------- fastrnn-sample


def sample_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="fastrnn-sample",
        description="Generate text from a fastrnn checkpoint (written to stdout as it "
        "is generated, after the prime text).",
        epilog=EXIT_RULE,
    )
    add_version(p)
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.add_argument(
        "--length",
        type=non_negative_int,
        default=500,
        metavar="N",
        help="characters to generate (default 500)",
    )
    p.add_argument(
        "--temperature",
        type=positive_float,
        default=1.0,
        metavar="T",
        help="> 0; below 1 is more conservative, above 1 more varied (default 1)",
    )
    p.add_argument(
        "--top-k",
        type=positive_int,
        default=None,
        metavar="K",
        help="draw only from the K likeliest characters, 1 <= K <= vocabulary size (default: all)",
    )
    p.add_argument(
        "--greedy", action="store_true", help="always take the likeliest character (deterministic)"
    )
    p.add_argument(
        "--prime",
        default="",
        metavar="TEXT",
        help="text that warms up the hidden state first (default: a newline)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        metavar="S",
        help="RNG seed: the same seed gives the same text (default: random)",
    )
    p.add_argument(
        "--num-samples",
        type=positive_int,
        default=1,
        metavar="N",
        help="draw N samples at once (N streams of one generation call), printed "
        "one after another, each after a '--- sample k ---' line (default 1: "
        "one sample, streamed as it is generated, with no such line)",
    )
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.add_argument(
        "--beam",
        type=positive_int,
        default=None,
        metavar="N",
        help="beam search instead of sampling: print the N likeliest continuations "
        "found, each with its bits/char (--temperature, --top-k, --greedy and "
        "--seed do not apply)",
    )
    return p


def sample_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of fastrnn-sample; returns the exit status. Ctrl-C and SIGTERM stop it alike,
    with status 130 and 143: the text streamed so far stays on stdout; a -o file is written
    once generation has ended, and a SIGTERM during that write waits for its end. The previous
    SIGTERM handler comes back on return."""
    args = sample_parser().parse_args(argv)
    if args.beam is not None and args.num_samples > 1:
        return _fail(
            "fastrnn-sample",
            ConfigError(
                "--num-samples does not apply to --beam, which prints the N likeliest continuations"
            ),
        )
    if args.beam is not None:
        command = beam_main
    elif args.num_samples > 1:
        command = samples_main
    else:
        command = one_sample_main
    try:
        with SigtermRaises() as signals:
            return command(args, signals)
    except KeyboardInterrupt:
        return _stopped(INTERRUPTED)
    except Terminated:
        return _stopped(TERMINATED)


def one_sample_main(args: argparse.Namespace, signals: SigtermRaises) -> int:
    """fastrnn-sample (one sample): streamed to stdout as it is generated, or written to -o at
    the end."""
    from .checkpoint import load_model
    from .sample import iter_sample

    try:
        model, vocab = load_model(args.checkpoint)
        chars = iter_sample(
            model,
            vocab,
            args.length,
            args.prime,
            args.temperature,
            args.top_k,
            args.greedy,
            args.seed,
        )
        first = next(chars, "")  # validates the options before any output is written
        if args.output:
            text = args.prime + first + "".join(chars)
            with signals.held():
                _write_file(args.output, text)
        else:
            _stream(sys.stdout, args.prime + first, chars)
    except FastrnnError as exc:
        return _fail("fastrnn-sample", exc)
    except BrokenPipeError:  # the reader (e.g. `head`) has all it wanted
        _silence_stdout()
    return 0


# ---------------------------------------------------------------- fastrnn-sample, signals

INTERRUPTED: int = 128 + signal.SIGINT  # 130, the status after Ctrl-C (EXIT_RULE)
TERMINATED: int = 128 + signal.SIGTERM  # 143, the status after SIGTERM (EXIT_RULE)


class Terminated(BaseException):
    """SIGTERM, raised in the main thread inside ``SigtermRaises``: as KeyboardInterrupt, a
    BaseException, so that no ``except Exception`` on the way swallows it."""


class SigtermRaises:
    """Within ``with SigtermRaises() as signals:``, SIGTERM raises Terminated in the main thread,
    as Ctrl-C raises KeyboardInterrupt, so that a command stops the same way for both; inside
    ``signals.held()`` it waits for the end of the block. The previous handler comes back on
    exit. Only the main thread can handle signals; elsewhere this does nothing."""

    def __init__(self) -> None:
        self.installed = False
        self.previous: Any = signal.SIG_DFL
        self.holding = False
        self.pending = False

    def __enter__(self) -> SigtermRaises:
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, self._handle)
            # None: a handler installed outside Python, which cannot be put back; the default
            self.previous = signal.SIG_DFL if previous is None else previous
            self.installed = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.installed:
            signal.signal(signal.SIGTERM, self.previous)
            self.installed = False

    def _handle(self, signum: int, frame: object) -> None:
        if self.holding:
            self.pending = True
        else:
            raise Terminated

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """A SIGTERM received inside this block (writing a file, which must not be left half
        written) raises Terminated when the block ends."""
        self.holding = True
        try:
            yield
        finally:
            self.holding = False
        if self.pending:
            raise Terminated


def _stopped(status: int) -> int:
    """After Ctrl-C or SIGTERM: what was streamed so far goes out (whole characters: stdout
    encodes what it was given character by character), then the status."""
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):  # a closed pipe or stream: nothing more to give
        pass
    return status


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final flush of the
    dead pipe does not print a traceback at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _stream(out, head: str, chars) -> None:
    """Write characters as they come, flushing at each line end so a pipe sees whole lines."""
    out.write(head)
    for ch in chars:
        out.write(ch)
        if ch == "\n":
            out.flush()
    out.write("\n")
    out.flush()


def _write_file(path: str, text: str) -> None:
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    except OSError as exc:
        raise FastrnnError(f"cannot write {path}: {exc.strerror or exc}") from None


# ============================================================================ tools
# fastrnn-eval, fastrnn-plot, fastrnn-inspect, fastrnn-export: one parser and one entry point
# each; the work is done by fastrnn.evaluate, .plot, .viewer and .export.


def _tool_parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = _Parser(prog=prog, description=description, epilog=EXIT_RULE)
    add_version(p)
    return p


# ---------------------------------------------------------------------------- fastrnn-eval


def eval_parser() -> argparse.ArgumentParser:
    from .evaluate import DEFAULT_BATCH_SIZE, DEFAULT_SEQ_LENGTH

    p = _tool_parser(
        "fastrnn-eval",
        "Score a checkpoint on UTF-8 text files: loss in bits/char, "
        "nats/char and perplexity per character, per file and "
        "overall (weighted by characters scored).",
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.add_argument("files", nargs="+", metavar="FILE", help="UTF-8 text files to score")
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=DEFAULT_BATCH_SIZE,
        metavar="B",
        help="streams read in parallel; each starts from a zero state and its first "
        f"character is not scored (default {DEFAULT_BATCH_SIZE})",
    )
    p.add_argument(
        "--seq-length",
        type=positive_int,
        default=DEFAULT_SEQ_LENGTH,
        metavar="T",
        help=f"characters per chunk; does not change the result (default {DEFAULT_SEQ_LENGTH})",
    )
    p.add_argument(
        "--skip-unknown",
        action="store_true",
        help="drop characters outside the model's vocabulary and report how many "
        "(default: stop with an error naming them)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        metavar="N",
        help="BLAS threads (default 1)",
    )
    return p


def _eval_line(name: str, r) -> str:
    skipped = f", {r.chars_skipped:,} skipped" if r.chars_skipped else ""
    return (
        f"{name}: {r.bits_per_char:.4f} bits/char ({r.nats_per_char:.4f} nats/char, "
        f"perplexity {r.perplexity:.3f}) over {r.chars_scored:,} characters{skipped}; "
        f"{r.seconds:.2f} s, {r.chars_per_sec:,.0f} chars/s"
    )


def eval_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of fastrnn-eval; returns the exit status."""
    from .checkpoint import load_model
    from .data import read_corpus
    from .evaluate import combine, evaluate
    from .train import limit_threads

    args = eval_parser().parse_args(argv)
    try:
        model, vocab = load_model(args.checkpoint)
        results = []
        for path in args.files:
            try:
                with limit_threads(args.threads):
                    result = evaluate(
                        model,
                        vocab,
                        read_corpus(path),
                        batch_size=args.batch_size,
                        seq_length=args.seq_length,
                        skip_unknown=args.skip_unknown,
                    )
            except FastrnnError as exc:
                msg = str(exc)
                raise type(exc)(msg if msg.startswith(path) else f"{path}: {msg}") from None
            results.append((path, result))
            if not args.json:
                print(_eval_line(path, result), flush=True)
    except (FastrnnError, ImportError) as exc:
        return _fail("fastrnn-eval", exc)
    overall = combine(r for _, r in results)
    if args.json:
        print(
            json.dumps(
                {
                    "checkpoint": args.checkpoint,
                    "files": [{"file": f, **r.to_dict()} for f, r in results],
                    "overall": overall.to_dict(),
                },
                indent=2,
            )
        )
    elif len(results) > 1:
        print(_eval_line("overall", overall))
    return 0


# ---------------------------------------------------------------------------- fastrnn-export


def export_parser() -> argparse.ArgumentParser:
    from .export import DEFAULT_OPSET

    p = _tool_parser(
        "fastrnn-export",
        "Export a checkpoint as an ONNX model built from ONNX's "
        "RNN, LSTM and GRU operators (needs fastrnn[onnx]).",
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the .onnx file to write")
    p.add_argument(
        "--opset",
        type=positive_int,
        default=DEFAULT_OPSET,
        metavar="N",
        help=f"ONNX operator set version, >= 13 (default {DEFAULT_OPSET})",
    )
    return p


def export_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of fastrnn-export; returns the exit status."""
    from .checkpoint import load_model
    from .export import write_onnx

    args = export_parser().parse_args(argv)
    try:
        model, vocab = load_model(args.checkpoint)
        write_onnx(model, vocab, args.output, args.opset)
    except (FastrnnError, ImportError) as exc:
        return _fail("fastrnn-export", exc)
    print(
        f"wrote {args.output}: {model.cell}, {model.num_layers} layer(s), H={model.hidden_size}, "
        f"V={model.vocab_size}; inputs tokens int64 (T, B), h0 (L, B, H)"
        f"{', c0 (L, B, H)' if model.cell_spec.cell_state else ''}"
    )
    return 0


# ---------------------------------------------------------------------------- fastrnn-inspect


def inspect_parser() -> argparse.ArgumentParser:
    from .viewer import DEFAULT_MAX_CHARS

    p = _tool_parser(
        "fastrnn-inspect",
        "Write a self-contained HTML page showing each hidden "
        "unit's activation over a text, the units ranked by "
        "interpretability, and the model's predictions.",
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.add_argument("text_file", metavar="TEXT_FILE", help="UTF-8 text to read with the model")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the .html file to write")
    p.add_argument(
        "--layer",
        type=non_negative_int,
        default=None,
        metavar="L",
        help="the layer to show, 0 = the first (default: the last)",
    )
    p.add_argument(
        "--max-chars",
        type=positive_int,
        default=DEFAULT_MAX_CHARS,
        metavar="N",
        help=f"show only the first N characters of the text (default {DEFAULT_MAX_CHARS})",
    )
    return p


def inspect_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of fastrnn-inspect; returns the exit status."""
    from .checkpoint import load_model
    from .data import read_corpus
    from .viewer import write_view

    args = inspect_parser().parse_args(argv)
    try:
        model, vocab = load_model(args.checkpoint)
        data = write_view(
            model, vocab, read_corpus(args.text_file), args.output, args.layer, args.max_chars
        )
    except (FastrnnError, ImportError) as exc:
        return _fail("fastrnn-inspect", exc)
    best = data["ranking"]["h"][0]
    print(
        f"wrote {args.output}: {len(data['text']):,} characters, layer {data['layer']}; "
        f"most interpretable h unit {best['unit']} ({best['feature']}, r = {best['r']:+.2f})"
    )
    return 0


# ---------------------------------------------------------------------------- fastrnn-plot


def plot_parser() -> argparse.ArgumentParser:
    p = _tool_parser(
        "fastrnn-plot",
        "Plot training and validation loss (bits/char) of one or "
        "more runs against iteration and wall-clock time, from "
        "their --log files (needs fastrnn[plot]).",
    )
    p.add_argument(
        "logs", nargs="+", metavar="LOG.jsonl", help="logs written by fastrnn-train --log"
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="FILE",
        help="the picture to write; the format follows the extension (.png, .svg, .pdf)",
    )
    p.add_argument(
        "--names",
        nargs="+",
        metavar="NAME",
        help="one legend name per log (default: each log's file name without extension)",
    )
    return p


def plot_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of fastrnn-plot; returns the exit status."""
    from .plot import write_curves

    args = plot_parser().parse_args(argv)
    try:
        write_curves(args.logs, args.output, args.names)
    except FastrnnError as exc:
        return _fail("fastrnn-plot", exc)
    print(f"wrote {args.output}")
    return 0


# ---------------------------------------------------------------- fastrnn-sample --num-samples


def sample_blocks(texts: Sequence[str], prime: str) -> str:
    """The samples one after another, sample k (from 1) after a '--- sample k ---' line."""
    return "\n".join(f"--- sample {k} ---\n{prime}{text}" for k, text in enumerate(texts, 1))


def samples_main(args: argparse.Namespace, signals: SigtermRaises) -> int:
    """fastrnn-sample --num-samples N (N > 1): N samples drawn together, numbered."""
    from .checkpoint import load_model
    from .sample import sample_many

    try:
        model, vocab = load_model(args.checkpoint)
        texts = sample_many(
            model,
            vocab,
            args.num_samples,
            args.length,
            args.prime,
            args.temperature,
            args.top_k,
            args.greedy,
            args.seed,
        )
        if args.output:
            with signals.held():
                _write_file(args.output, sample_blocks(texts, args.prime))
        else:
            print(sample_blocks(texts, args.prime), flush=True)
    except FastrnnError as exc:
        return _fail("fastrnn-sample", exc)
    except BrokenPipeError:
        _silence_stdout()
    return 0


# ---------------------------------------------------------------------------- fastrnn-sample --beam


def beam_main(args: argparse.Namespace, signals: SigtermRaises) -> int:
    """fastrnn-sample --beam N: the N likeliest continuations, best first, each after a
    '# beam k: B bits/char' line."""
    from .beam import beam_search, bits_per_char
    from .checkpoint import load_model

    try:
        model, vocab = load_model(args.checkpoint)
        found = beam_search(model, vocab, args.length, args.prime, args.beam)
        blocks = [
            f"# beam {k}: {bits_per_char(logp, args.length):.4f} bits/char "
            f"(log-probability {logp:.2f} nats)\n{args.prime}{text}"
            for k, (text, logp) in enumerate(found, 1)
        ]
        if args.output:
            with signals.held():
                _write_file(args.output, "\n".join(blocks))
        else:
            for block in blocks:
                print(block, flush=True)
    except FastrnnError as exc:
        return _fail("fastrnn-sample", exc)
    except BrokenPipeError:
        _silence_stdout()
    return 0


# ---------------------------------------------------------------------------- fastrnn-info


def info_parser() -> argparse.ArgumentParser:
    p = _tool_parser(
        "fastrnn-info",
        "Show what a fastrnn checkpoint holds: model, vocabulary, "
        "corpus, position, validation losses, optimizer.",
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.add_argument(
        "--json",
        action="store_true",
        help="one JSON object (null where the checkpoint does not say)",
    )
    return p


def info_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of fastrnn-info; returns the exit status."""
    from .checkpoint import describe

    args = info_parser().parse_args(argv)
    try:
        info = describe(args.checkpoint)
        text = json.dumps(info, indent=2, ensure_ascii=False) if args.json else format_info(info)
        print(text)
    except FastrnnError as exc:
        return _fail("fastrnn-info", exc)
    except BrokenPipeError:
        _silence_stdout()
    return 0


def format_info(info: dict[str, Any]) -> str:
    """The lines fastrnn-info prints for checkpoint.describe's dict ('n/a' for what is missing)."""
    m, v, c = info["model"], info["vocabulary"], info["corpus"]
    cell = {"rnn": "vanilla RNN", "lstm": "LSTM", "gru": "GRU"}.get(m["cell"], _na(m["cell"]))
    sha = c["sha256"][:16] if c["sha256"] else "n/a"
    lines = [
        f"checkpoint  {info['path']} (format version {_na(info['format_version'])})",
        f"model       {cell}, {_na(m['num_layers'])} layer(s), hidden {_na(m['hidden_size'])}, "
        f"{_embedding(m['embedding_size'])}, {m['parameters']:,} parameters, {_na(m['dtype'])}",
        f"vocabulary  {v['size']} characters: {_escaped(v['sample'])}"
        + (" ..." if v["size"] > len(v["sample"]) else ""),
        f"corpus      {_na(c['path'])}: {_na(c['chars'], '{:,}')} characters, sha256 {sha}",
        f"position    iteration {_na(info['iteration'], '{:,}')}, "
        f"{_na(info['epoch'])} epoch(s) + {_na(info['epoch_step'])} chunk(s); "
        f"batches {_na(info['batch_size'])} x {_na(info['seq_length'])}",
        f"best val    {_loss_text(info['best_val_loss'])}",
        f"last val    {_loss_text(info['val_loss'])}",
        f"optimizer   {_na(info['optimizer'])}, lr {_na(info['learning_rate'], '{:g}')}",
    ]
    return "\n".join(lines)


def _embedding(size: int | None) -> str:
    return {None: "embedding n/a", 0: "one-hot input"}.get(size, f"embedding {size}")


def _na(value: Any, fmt: str = "{}") -> str:
    return "n/a" if value is None else fmt.format(value)


def _loss_text(loss: dict[str, float] | None) -> str:
    if loss is None:
        return "n/a"
    return f"{loss['nats']:.4f} nats/char = {loss['bits']:.4f} bits/char"


def _escaped(chars: str) -> str:
    """The characters between double quotes, each unprintable one (newline, tab, control,
    a space other than ' ') escaped as Python writes it."""
    out = []
    for ch in chars:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(repr(ch)[1:-1])
    return '"' + "".join(out) + '"'


# ---------------------------------------------------------------------------- python -m fastrnn

TOOLS: dict[str, tuple[Callable[[], argparse.ArgumentParser], Callable[..., int], str]] = {
    "train": (train_parser, train_main, "train a model on a UTF-8 text (fastrnn-train)"),
    "sample": (sample_parser, sample_main, "generate text from a checkpoint (fastrnn-sample)"),
    "info": (info_parser, info_main, "show what a checkpoint holds (fastrnn-info)"),
    "eval": (eval_parser, eval_main, "score a checkpoint on text files (fastrnn-eval)"),
    "plot": (plot_parser, plot_main, "plot the loss curves of --log files (fastrnn-plot)"),
    "inspect": (
        inspect_parser,
        inspect_main,
        "an HTML page of hidden-unit activations (fastrnn-inspect)",
    ),
    "export": (export_parser, export_main, "a checkpoint as an ONNX model (fastrnn-export)"),
}


def main_usage() -> str:
    tools = "\n".join(f"  {name:<9}{about}" for name, (_, _, about) in TOOLS.items())
    return (
        f"usage: python -m fastrnn {{{','.join(TOOLS)}}} [OPTIONS ...]\n\n"
        f"tools (each also installed as fastrnn-TOOL; python -m fastrnn TOOL --help):\n"
        f"{tools}\n\n{EXIT_RULE}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fastrnn TOOL ...``: the same entry as ``fastrnn-TOOL ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in TOOLS:
        return TOOLS[argv[0]][1](argv[1:])
    if argv and argv[0] in ("-h", "--help"):
        print(main_usage())
        return 0
    if argv and argv[0] == "--version":
        from . import __version__

        print(f"fastrnn {__version__}")
        return 0
    problem = f"unknown tool {argv[0]!r}" if argv else "no tool given"
    print(
        f"{main_usage()}\n\npython -m fastrnn: error: {problem}; choose one of {', '.join(TOOLS)}",
        file=sys.stderr,
    )
    return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
