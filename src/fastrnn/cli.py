"""Command-line entry points: ``fastrnn-train``, ``fastrnn-sample``, ``fastrnn-info`` and
``python -m fastrnn train|sample|info``.

Thin on purpose: parse flags, call fastrnn.train.train / fastrnn.sample.iter_sample /
fastrnn.checkpoint.describe, and turn user errors (FastrnnError) into one line on stderr and the
exit status of EXIT_RULE, never a traceback.
"""
from __future__ import annotations

import argparse
import difflib
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .config import DEFAULT_MAX_EPOCHS, TrainConfig
from .errors import ConfigError, FastrnnError
from .model import BACKENDS, CELLS
from .optim import OPTIMIZERS

USAGE_ERROR = 2  # a bad flag or value: the command line is the thing to fix
FAILURE = 1      # the command was valid but the run failed (a file, a checkpoint, divergence)

EXIT_RULE = """\
Exit status: 0 done; 2 a usage error (an unknown flag, a bad value, options that contradict each
other or the checkpoint); 1 a failure while running (unreadable text or checkpoint, a file that
cannot be written, diverged training); 130 after Ctrl-C (SIGINT), 143 after SIGTERM."""

D = TrainConfig()  # defaults, shown in --help

# The classic numpy char-RNN configuration (min-char-rnn style): hidden 100, 40 steps, one
# stream, plain SGD at 0.01 with clipping at ±5 on the gradient of the summed loss.
CLASSIC_CONFIG = ("--hidden-size 100 --seq-length 40 --batch-size 1 --optimizer sgd "
                  "--learning-rate 0.4 --grad-clip 0.125 --dtype float64")

TRAIN_EPILOG = f"""\
The classic numpy char-RNN configuration (hidden 100, 40 steps, one stream, SGD 0.01, clip ±5):
  fastrnn-train FILE {CLASSIC_CONFIG}
(that configuration applies lr 0.01 and clipping at ±5 to the gradient of the loss summed over
40 steps; fastrnn averages the loss over the B*T characters of a chunk, which divides the
gradient by 40, so the same update is lr 0.01 * 40 = 0.4 and clipping at 5 / 40 = 0.125).

{EXIT_RULE} After a signal the checkpoint is written first."""


class _Parser(argparse.ArgumentParser):
    """Bad options give one line on stderr (no usage dump) and exit status 2. No prefix
    abbreviations (--temp is not --temperature), and a flag of another tool (char-rnn, torch-rnn,
    nanoGPT, a misspelling) gets a "did you mean" pointing at this tool's flag."""

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(**kwargs)

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            self.error(unrecognized_message(self, extras))
        return parsed

    def error(self, message: str):  # type: ignore[override]
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def add_version(p: argparse.ArgumentParser) -> None:
    from . import __version__

    p.add_argument("--version", action="version", version=f"%(prog)s (fastrnn) {__version__}")


# ---------------------------------------------------------------------------- unknown flags

# Flags of char-rnn (-rnn_size), torch-rnn (-wordvec_size) and nanoGPT (--n_layer), and common
# spellings, after normalisation (no leading dashes, lower case, '_' -> '-'), with the fastrnn
# flags or arguments they mean, in order of preference; only those the parser has are offered.
FOREIGN_FLAGS: dict[str, tuple[str, ...]] = {
    "epochs": ("--max-epochs",), "num-epochs": ("--max-epochs",), "n-epochs": ("--max-epochs",),
    "iters": ("--max-iters",), "num-iters": ("--max-iters",), "max-steps": ("--max-iters",),
    "steps": ("--max-iters",), "max-time": ("--time-limit",), "time": ("--time-limit",),
    "rnn-size": ("--hidden-size",), "hidden": ("--hidden-size",), "hidden-dim": ("--hidden-size",),
    "n-hidden": ("--hidden-size",), "lr": ("--learning-rate",),
    "learning-rate-decay": ("--lr-decay",), "lr-decay-factor": ("--lr-decay",),
    "layers": ("--num-layers",), "n-layer": ("--num-layers",), "n-layers": ("--num-layers",),
    "model-type": ("--model",), "rnn-type": ("--model",), "cell-type": ("--model",),
    "cell": ("--cell", "--model"),
    "wordvec-size": ("--embedding-size",), "n-embd": ("--embedding-size",),
    "embed-size": ("--embedding-size",), "embedding-dim": ("--embedding-size",),
    "block-size": ("--seq-length",), "seq-len": ("--seq-length",), "bptt": ("--seq-length",),
    "train-frac": ("--val-fraction",), "val-frac": ("--val-fraction",),
    "clip": ("--grad-clip",), "clip-grad": ("--grad-clip",), "max-norm": ("--max-grad-norm",),
    "clip-norm": ("--max-grad-norm",), "num-threads": ("--threads",),
    "checkpoint-dir": ("--checkpoint",), "checkpoint-name": ("--checkpoint",),
    "savefile": ("--checkpoint",), "out-dir": ("--checkpoint",),
    "checkpoint": ("--checkpoint", "CHECKPOINT"), "model": ("--model", "CHECKPOINT"),
    "eval-val-every": ("--eval-every",), "eval-interval": ("--eval-every",),
    "checkpoint-every": ("--eval-every",), "input": ("TEXT_FILE",), "input-h5": ("TEXT_FILE",),
    "input-json": ("TEXT_FILE",), "data-dir": ("TEXT_FILE",), "data": ("TEXT_FILE",),
    "text": ("TEXT_FILE",), "log-file": ("--log",),
    "temp": ("--temperature",), "primetext": ("--prime",), "start-text": ("--prime",),
    "start": ("--prime",), "max-new-tokens": ("--length",), "num-chars": ("--length",),
    "sample": ("--greedy",), "argmax": ("--greedy",), "topk": ("--top-k",),
    "out": ("--output", "-o"),
}
CPU_ONLY = "fastrnn runs on the CPU; --threads sets its BLAS threads"
FOREIGN_NOTES = {name: CPU_ONLY for name in ("gpu", "gpuid", "gpu-backend", "opencl", "device",
                                             "cuda")}


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
    if key in FOREIGN_NOTES:
        return FOREIGN_NOTES[key]
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
        other = make_parser()
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
    p = _Parser(prog="fastrnn-train",
                description="Train a character-level RNN language model on a UTF-8 text file.",
                epilog=TRAIN_EPILOG, argument_default=None)
    add_version(p)
    g = p.add_argument_group("data")
    g.add_argument("text_file", nargs="?", metavar="TEXT_FILE",
                   help="UTF-8 text to learn; without it, the Python documentation that ships "
                        "with every Python (pydoc_data.topics, ~465,000 characters)")
    g.add_argument("--batch-size", type=positive_int, metavar="B",
                   help=f"parallel streams per chunk (default {D.batch_size}: enough rows for "
                        "BLAS to run efficiently, few enough that each stream is long)")
    g.add_argument("--seq-length", type=positive_int, metavar="T",
                   help=f"steps per chunk, the length of backpropagation through time "
                        f"(default {D.seq_length})")
    g.add_argument("--val-fraction", type=fraction, metavar="F",
                   help=f"tail of the text held out for validation, in [0, 1) "
                        f"(default {D.val_fraction})")
    g = p.add_argument_group("model")
    g.add_argument("--model", "--cell", dest="cell", choices=CELLS,
                   help=f"recurrent cell (default {D.cell}); lstm learns longer-range "
                        "structure, as in char-rnn")
    g.add_argument("--num-layers", type=positive_int, metavar="L",
                   help=f"stacked recurrent layers (default {D.num_layers})")
    g.add_argument("--dropout", type=fraction, metavar="P",
                   help=f"dropout between layers and before the output, while training only, "
                        f"in [0, 1) (default {D.dropout:g})")
    g.add_argument("--hidden-size", type=positive_int, metavar="H",
                   help=f"hidden units (default {D.hidden_size}, as in the classic char-RNN)")
    g.add_argument("--dtype", choices=("float32", "float64"),
                   help=f"(default {D.dtype}: about twice the speed of float64 and plenty "
                        "for training; float64, the default of fastrnn.CharRNN in Python, is "
                        "the exact reference that tests and comparisons use)")
    g.add_argument("--seed", type=int, help=f"initial weights and sampling RNG (default {D.seed})")
    g = p.add_argument_group("optimization")
    g.add_argument("--optimizer", choices=OPTIMIZERS,
                   help=f"(default {D.optimizer}: converges fastest with little tuning)")
    g.add_argument("--learning-rate", type=positive_float, metavar="LR",
                   help=f"(default {D.learning_rate:g}, a good value for adam)")
    g.add_argument("--lr-decay", type=decay, metavar="FACTOR",
                   help=f"multiply the learning rate by FACTOR every --lr-decay-every "
                        f"iterations (default {D.lr_decay:g}: no decay)")
    g.add_argument("--lr-decay-every", type=positive_int, metavar="N",
                   help=f"(default {D.lr_decay_every})")
    g.add_argument("--grad-clip", type=non_negative_float, metavar="C",
                   help=f"clip every gradient element to [-C, C], 0 for off "
                        f"(default {D.grad_clip:g}, the classic char-RNN's clip)")
    g.add_argument("--max-grad-norm", type=non_negative_float, metavar="N",
                   help="rescale the gradients when their global norm exceeds N "
                        "(default 0: off)")
    g = p.add_argument_group("duration (the first limit reached ends the run)")
    g.add_argument("--max-iters", type=non_negative_int, metavar="N",
                   help="stop after iteration N, counted from the start of the run (also "
                        "when resuming); 0 for no limit (default 0)")
    g.add_argument("--max-epochs", type=non_negative_float, metavar="E",
                   help=f"stop after E passes over the text; 0 for no limit (default "
                        f"{DEFAULT_MAX_EPOCHS:g} when no limit is given: about 40 s on the "
                        "default corpus, 1.5 min on tinyshakespeare, on a 2-core CPU)")
    g.add_argument("--time-limit", type=non_negative_float, metavar="SECONDS",
                   help="stop after this many seconds of this session; 0 for none (default 0)")
    g = p.add_argument_group("checkpoints")
    g.add_argument("--checkpoint", metavar="PATH",
                   help=f"written every --eval-every iterations and at the end; the best "
                        f"validation checkpoint goes beside it as NAME.best.npz "
                        f"(default {D.checkpoint})")
    g.add_argument("--resume", metavar="PATH",
                   help="continue that run exactly, with its options and corpus (TEXT_FILE "
                        "and --checkpoint default to the run's); sizes, --val-fraction, "
                        "--dtype, --seed and --optimizer cannot change")
    g.add_argument("--overwrite", action="store_true", default=None,
                   help="let a new run replace an existing checkpoint (and its best) of another "
                        "run; without it the run refuses to start")
    g.add_argument("--init-from", metavar="PATH",
                   help="start a new run from that checkpoint's weights (fine-tuning); the "
                        "text may only use characters of its vocabulary")
    g.add_argument("--eval-every", type=non_negative_int, metavar="N",
                   help=f"validation loss, log line and checkpoint every N iterations "
                        f"(default {D.eval_every}: every few seconds at the defaults)")
    g = p.add_argument_group("output")
    g.add_argument("--sample-every", type=non_negative_int, metavar="N",
                   help=f"print a short sample every N iterations, 0 for never "
                        f"(default {D.sample_every})")
    g.add_argument("--sample-length", type=non_negative_int, metavar="N",
                   help=f"characters per sample (default {D.sample_length})")
    g.add_argument("--log", metavar="PATH",
                   help="append one JSON line per evaluation: iteration, train and validation "
                        "loss, chars/s")
    g.add_argument("--quiet", action="store_true", default=None,
                   help="print only the final summary line")
    g = p.add_argument_group("compute")
    g.add_argument("--threads", type=positive_int, metavar="N",
                   help=f"BLAS threads (default {D.threads}). More pay only on cores the run has "
                        "to itself: OpenBLAS threads spin while they wait for each other inside "
                        "every matrix product, so one other busy process makes 2 threads slower "
                        "than 1, and on a loaded machine they ran over 10x slower than 1 "
                        "(measured figures in the README)")
    g.add_argument("--backend", choices=BACKENDS,
                   help=f"compiled kernel or the numpy reference (default {D.backend})")
    return p


def train_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options given on the command line (None = not given), as TrainConfig fields; only
    these override a resumed checkpoint's configuration."""
    return {k: v for k, v in vars(args).items() if v is not None and k != "text_file"}


def train_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of fastrnn-train; returns the exit status."""
    from .train import train

    args = train_parser().parse_args(argv)
    try:
        result = train(args.text_file, **train_options(args))
    except (FastrnnError, ImportError) as exc:  # ImportError: the kernel is not built
        return _fail("fastrnn-train", exc)
    except KeyboardInterrupt:
        print("fastrnn-train: interrupted before training started or a second time; "
              "stopped without writing a checkpoint", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _silence_stdout()
        print("fastrnn-train: error: the output pipe was closed; stopped (checkpoints written "
              "so far are intact)", file=sys.stderr)
        return 1
    if result.stop_reason in ("sigint", "sigterm"):
        print(f"fastrnn-train: stopped by {result.stop_reason.upper()}; checkpoint saved to "
              f"{result.checkpoint}", file=sys.stderr)
    return result.exit_status


def _fail(prog: str, exc: BaseException) -> int:
    """One line on stderr; the status says whose fault it is (EXIT_RULE)."""
    print(f"{prog}: error: {exc}", file=sys.stderr)
    return exit_status(exc)


def exit_status(exc: BaseException) -> int:
    """USAGE_ERROR for an invalid or contradictory option (ConfigError), FAILURE otherwise."""
    return USAGE_ERROR if isinstance(exc, ConfigError) else FAILURE


# ---------------------------------------------------------------------------- fastrnn-sample

def sample_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="fastrnn-sample",
                description="Generate text from a fastrnn checkpoint (written to stdout as it "
                            "is generated, after the prime text).", epilog=EXIT_RULE)
    add_version(p)
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.add_argument("--length", type=non_negative_int, default=500, metavar="N",
                   help="characters to generate (default 500)")
    p.add_argument("--temperature", type=positive_float, default=1.0, metavar="T",
                   help="> 0; below 1 is more conservative, above 1 more varied (default 1)")
    p.add_argument("--top-k", type=positive_int, default=None, metavar="K",
                   help="draw only from the K likeliest characters, 1 <= K <= vocabulary size "
                        "(default: all)")
    p.add_argument("--greedy", action="store_true",
                   help="always take the likeliest character (deterministic)")
    p.add_argument("--prime", default="", metavar="TEXT",
                   help="text that warms up the hidden state first (default: a newline)")
    p.add_argument("--seed", type=int, default=None, metavar="S",
                   help="RNG seed: the same seed gives the same text (default: random)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    return p


def sample_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of fastrnn-sample; returns the exit status."""
    from .checkpoint import load_model
    from .sample import iter_sample

    args = sample_parser().parse_args(argv)
    try:
        model, vocab = load_model(args.checkpoint)
        chars = iter_sample(model, vocab, args.length, args.prime, args.temperature,
                            args.top_k, args.greedy, args.seed)
        first = next(chars, "")  # validates the options before any output is written
        if args.output:
            _write_file(args.output, args.prime + first + "".join(chars))
        else:
            _stream(sys.stdout, args.prime + first, chars)
    except FastrnnError as exc:
        return _fail("fastrnn-sample", exc)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader (e.g. `head`) has all it wanted
        _silence_stdout()
    return 0


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


# ---------------------------------------------------------------------------- fastrnn-info

def info_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="fastrnn-info",
                description="Show what a fastrnn checkpoint holds: model, vocabulary, corpus, "
                            "position, validation losses, optimizer.", epilog=EXIT_RULE)
    add_version(p)
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    p.add_argument("--json", action="store_true",
                   help="one JSON object (null where the checkpoint does not say)")
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
        f"embedding {_na(m['embedding_size'])}, {m['parameters']:,} parameters, {_na(m['dtype'])}",
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
}


def main_usage() -> str:
    tools = "\n".join(f"  {name:<8}{about}" for name, (_, _, about) in TOOLS.items())
    return (f"usage: python -m fastrnn {{{','.join(TOOLS)}}} [OPTIONS ...]\n\n"
            f"tools (each also installed as fastrnn-TOOL; python -m fastrnn TOOL --help):\n"
            f"{tools}\n\n{EXIT_RULE}")


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
    problem = (f"unknown tool {argv[0]!r}" if argv else "no tool given")
    print(f"{main_usage()}\n\npython -m fastrnn: error: {problem}; choose one of "
          f"{', '.join(TOOLS)}", file=sys.stderr)
    return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
