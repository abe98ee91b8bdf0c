"""Training: the loop behind ``fastrnn-train``, as a Python function.

    result = fastrnn.train("input.txt", max_iters=2000, checkpoint="run.npz")

One iteration reads a (B, T) chunk, computes the mean loss and all gradients with full BPTT from
the carried hidden state, clips, and takes one optimizer step. The hidden state is carried from
chunk to chunk and reset to zero at the start of each epoch. Everything needed to continue exactly
is in the checkpoint: parameters, optimizer state, hidden state, data position, RNG state.

The options and how they meet a checkpoint are in config.py, the learning-rate schedules and the
watch on the validation loss in schedule.py, what the run prints in report.py.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from . import checkpoint as ckpt
from . import report
from .checkpoint import best_path
from .config import (DEFAULT_TIME_LIMIT, TrainConfig, budget_given,
                     canonical_options, check_option_names, checkpoint_to_load, resolve_config)
from .data import (DEFAULT_CORPUS_NAME, BatchIterator, Position, Vocabulary, check_length,
                   default_corpus, describe_chars, read_corpus, split_train_val,
                   validation_chunks)
from .errors import CheckpointError, ConfigError, CorpusError, DivergedError, FastrnnError
from .model import CharRNN
from .optim import make_optimizer
from .sample import iter_sample
from .schedule import LossWatch, cosine_progress, learning_rate

__all__ = ["train", "Trainer", "TrainResult", "TrainConfig", "best_path", "DEFAULT_TIME_LIMIT"]

SMOOTHING = 0.02  # weight of the newest loss in the displayed running mean (~50 iterations)
EXIT_STATUS = {"sigint": 130, "sigterm": 143}


@dataclass
class TrainResult:
    """What happened: the CLI prints it and turns stop_reason into the exit status."""

    iterations: int
    chars_seen: int
    train_loss: float
    val_loss: float | None
    best_val_loss: float | None
    wall_time: float
    chars_per_sec: float
    stop_reason: str                  # a limit, 'patience', 'sigint', 'sigterm', 'complete'
    checkpoint: str | None
    model: CharRNN = field(repr=False)
    vocab: Vocabulary = field(repr=False)
    best_iteration: int | None = None   # where best_val_loss came
    best_checkpoint: str | None = None  # the checkpoint of the best validation loss, if written
    resumed: str | None = None          # the checkpoint a resumed run continued
    done_by: str | None = None          # 'complete': the limit that had ended the run before

    @property
    def exit_status(self) -> int:
        """0 for a normal end, 130 after SIGINT, 143 after SIGTERM (128 + signal number)."""
        return EXIT_STATUS.get(self.stop_reason, 0)


def train(corpus: str | None = None, *, text: str | None = None, out: TextIO | None = None,
          handle_signals: bool = True, **options: Any) -> TrainResult:
    """Train as ``fastrnn-train`` does and return a TrainResult.

    corpus: a text file (None: the default corpus, or on resume the checkpoint's corpus);
    text: the training text itself instead of a file; options: TrainConfig fields
    (checkpoint=None writes no file; quiet=True prints nothing, not even the summary). On
    resume, only the options given here override the checkpoint's configuration, and a
    max_iters, max_epochs or time_limit given is a budget counted from the resume point.
    Raises FastrnnError subclasses for bad input (CorpusError, CheckpointError, ConfigError,
    also for an unknown option name) and DivergedError.
    """
    if corpus is not None:
        options["corpus"] = os.fspath(corpus)
    check_option_names(options)
    trainer = Trainer(options, text=text, out=out if out is not None else sys.stdout)
    return trainer.run(handle_signals=handle_signals)


# ---------------------------------------------------------------------------- the data

@dataclass
class TrainData:
    """The encoded corpus, cut into training chunks and the validation tail."""

    name: str
    chars: int
    sha256: str
    vocab_size: int
    batches: BatchIterator
    val_chunks: list[tuple[np.ndarray, np.ndarray]]
    val_chars: int


def load_text(cfg: TrainConfig, text: str | None, given: bool) -> tuple[str, str]:
    """(name, text) of the training text: given directly, the corpus file, or the default.
    On resume without TEXT_FILE (given False), the stored corpus path is looked for as stored,
    then by its name beside the checkpoint; cfg.corpus becomes the path found."""
    if text is not None:
        if not text:
            raise CorpusError("the training text is empty")
        return "<text>", text
    if cfg.corpus:
        if cfg.resume and not given:
            cfg.corpus = find_corpus(cfg.corpus, cfg.resume)
        return cfg.corpus, read_corpus(cfg.corpus)
    return DEFAULT_CORPUS_NAME, default_corpus()


def find_corpus(stored: str, checkpoint: str) -> str:
    """The stored corpus path if it exists, else the file of that name in the checkpoint's
    directory; CorpusError naming both and the fix when neither exists."""
    beside = os.path.join(os.path.dirname(os.path.abspath(checkpoint)), os.path.basename(stored))
    for path in (stored, beside):
        if os.path.exists(path):
            return os.path.abspath(path)
    raise CorpusError(f"the corpus of {checkpoint}, {stored}, cannot be found (nor {beside}); "
                      f"give the text as TEXT_FILE: fastrnn-train TEXT_FILE --resume "
                      f"{checkpoint}")


def prepare_data(cfg: TrainConfig, name: str, text: str, vocab: Vocabulary) -> TrainData:
    ids = vocab.encode(text)
    sha256 = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    check_length(ids.size, cfg.batch_size, cfg.seq_length, cfg.val_fraction)
    train_ids, val_ids = split_train_val(ids, cfg.val_fraction)
    return TrainData(name=name, chars=ids.size, sha256=sha256, vocab_size=vocab.size,
                     batches=BatchIterator(train_ids, cfg.batch_size, cfg.seq_length),
                     val_chunks=validation_chunks(val_ids, cfg.batch_size, cfg.seq_length),
                     val_chars=val_ids.size)


def model_for(cfg: TrainConfig, loaded: ckpt.Checkpoint | None, text: str,
              corpus_name: str) -> tuple[CharRNN, Vocabulary]:
    """A new model over the text's vocabulary, or the checkpoint's model, whose vocabulary
    must then cover every character of the text (see drop_unknown)."""
    if loaded is None:
        vocab = Vocabulary.from_text(text)
        if vocab.size < 2:
            raise CorpusError(f"the text has only {vocab.size} distinct character; "
                              "at least 2 are needed to predict anything")
        return CharRNN(vocab.size, cfg.hidden_size, num_layers=cfg.num_layers,
                       cell=cfg.cell, dropout=cfg.dropout, dtype=cfg.dtype,
                       seed=cfg.seed, embedding_size=cfg.embedding_size, init=cfg.init), vocab
    loaded.model.dropout = cfg.dropout   # training-time only: may change on resume
    return loaded.model, loaded.vocab


def drop_unknown(cfg: TrainConfig, vocab: Vocabulary, text: str,
                 corpus_name: str) -> tuple[str, str | None]:
    """(text, note): with --unknown-chars drop, the text without the characters outside the
    vocabulary of the checkpoint, and a note saying how many went; CorpusError otherwise."""
    unknown = vocab.unknown_chars(text)
    if not unknown:
        return text, None
    source = cfg.resume or cfg.init_from
    if cfg.unknown_chars != "drop":
        raise CorpusError(f"{corpus_name} has {len(unknown)} characters outside the "
                          f"vocabulary of {source}: {describe_chars(unknown)}; "
                          "--unknown-chars drop leaves them out")
    kept = text.translate({ord(c): None for c in unknown})
    if not kept:
        raise CorpusError(f"{corpus_name} has no character of the vocabulary of {source}")
    return kept, (f"dropped {len(text) - len(kept):,} occurrences of {len(unknown)} "
                  f"characters outside the vocabulary of {source}: {describe_chars(unknown)}")


# ---------------------------------------------------------------------------- the trainer

class Trainer:
    """Holds the state of one training session; ``run`` is the loop."""

    def __init__(self, options: dict[str, Any], text: str | None, out: TextIO):
        options = canonical_options(options)
        source = checkpoint_to_load(options)
        loaded = ckpt.load_checkpoint(source) if source else None
        self.config = cfg = resolve_config(options, loaded)
        self.progress = report.Progress(out, cfg.quiet)
        corpus_name, text = load_text(cfg, text, given="corpus" in options)
        self.model, self.vocab = model_for(cfg, loaded, text, corpus_name)
        if loaded is not None:
            text, note = drop_unknown(cfg, self.vocab, text, corpus_name)
            if note:
                self.progress.say(f"note: {note}")
        self.data = prepare_data(cfg, corpus_name, text, self.vocab)
        del text  # the encoded ids (2 bytes/char) are all that is kept
        self.batches = self.data.batches
        self.optimizer = make_optimizer(cfg.optimizer, self.model.params, cfg.learning_rate,
                                        backend=cfg.backend)
        self.h = self.model.initial_state(cfg.batch_size)  # (B, H) carried state
        self.grads = {k: np.empty_like(v) for k, v in self.model.params.items()}
        self.grads["h0"] = np.empty_like(self.h)
        self.iteration = 0
        self.smoothed_loss: float | None = None
        self.last_val: float | None = None
        self.best_val: float | None = None
        self.best_iteration: int | None = None
        self.last_saved: tuple[str, int] | None = None
        self.last_eval_iteration: int | None = None
        self.watch = LossWatch()           # the periodic validation losses: patience, plateau
        self.seconds_before = 0.0          # training time of the sessions before this one
        self.session = Session(0, cfg.batch_size * cfg.seq_length)
        self.sample_rng = np.random.default_rng(cfg.seed)
        self.signals = StopSignals(enabled=False)
        self.plotter: Any = None           # fastrnn.plot.write_curves, with --plot
        if cfg.resume:
            assert loaded is not None
            try:
                self.restore(loaded)
            except (KeyError, TypeError, ValueError) as exc:
                if isinstance(exc, CheckpointError):
                    raise
                raise CheckpointError(f"{cfg.resume}: not a training checkpoint, cannot resume "
                                      f"from it ({type(exc).__name__}: {exc})") from None
            self.extend_budget(budget_given(options))

    def extend_budget(self, given: list[str]) -> None:
        """A budget given on resume counts from the resume point: --max-iters N trains N more
        iterations, --max-epochs E E more epochs, --time-limit S S more seconds."""
        cfg = self.config
        if "max_iters" in given and cfg.max_iters > 0:
            cfg.max_iters += self.iteration
        if "max_epochs" in given and cfg.max_epochs > 0:
            cfg.max_epochs += self.epoch_progress()
        if "time_limit" in given and cfg.time_limit > 0:
            cfg.time_limit += self.seconds_before
        if given:
            self.watch.since_best = 0  # patience counts again from here

    def restore(self, loaded: ckpt.Checkpoint) -> None:
        """Put back everything a checkpoint saved, so the run continues exactly."""
        head = loaded.header
        self.iteration = int(head["iteration"])
        self.batches.seek(Position(**head["position"]))
        self.optimizer.load_state(loaded.optimizer_state, head["optimizer"]["step"])
        if loaded.hidden is None or loaded.hidden.shape != self.h.shape:
            raise CheckpointError(f"{self.config.resume}: hidden state missing or of the wrong "
                                  "shape")
        self.h = np.ascontiguousarray(loaded.hidden, dtype=self.model.dtype)
        self.sample_rng.bit_generator.state = head["rng_state"]
        self.smoothed_loss = head.get("smoothed_loss")
        self.last_val = head.get("val_loss")
        self.best_val = head.get("best_val_loss")
        self.best_iteration = head.get("best_iteration")
        self.watch = LossWatch.from_dict(head.get("loss_watch"))
        self.seconds_before = float(head.get("train_seconds", 0.0))
        if head.get("corpus_sha256") != self.data.sha256:
            self.progress.say(f"note: {self.data.name} differs from the corpus this checkpoint "
                              "was trained on; the run continues but is not an exact "
                              "continuation")

    # ------------------------------------------------------------------ one iteration

    def train_step(self) -> float:
        """One chunk: loss and gradients, clipping, one optimizer step. Returns the loss; a
        non-finite loss leaves the parameters untouched."""
        cfg = self.config
        inputs, targets, starts_epoch = next(self.batches)
        if starts_epoch:
            self.h = np.zeros_like(self.h)  # each epoch reads the streams from their start
        loss, grads, h_last = self.model.loss_and_grads(inputs, targets, self.h,
                                                        backend=cfg.backend, grads=self.grads)
        if not math.isfinite(loss):
            return loss
        self.optimizer.lr = self.learning_rate()
        self.optimizer.step(self.model.params, grads, clip=cfg.grad_clip,
                            max_norm=cfg.max_grad_norm)
        self.h = h_last
        self.iteration += 1
        return loss

    def learning_rate(self) -> float:
        """The rate of the next update, by the schedule (schedule.py)."""
        cfg = self.config
        progress = 0.0
        if cfg.lr_schedule == "cosine":
            progress = cosine_progress(self.iteration, cfg.warmup_iters,
                                       self.planned_iterations(), self.train_seconds(),
                                       cfg.time_limit)
        return learning_rate(cfg.lr_schedule, cfg.learning_rate, self.iteration,
                             warmup_iters=cfg.warmup_iters, decay=cfg.lr_decay,
                             decay_every=cfg.lr_decay_every, progress=progress,
                             plateau_scale=self.watch.scale)

    def evaluate(self) -> float | None:
        """Mean loss per character over the validation tail (forward only, own hidden state)."""
        if not self.data.val_chunks:
            return None
        B = self.data.val_chunks[0][0].shape[0]
        h = self.model.initial_state(B)
        total = 0.0
        for inputs, targets in self.data.val_chunks:
            loss, h = self.model.loss(inputs, targets, h, backend=self.config.backend)
            total += loss
        return total / len(self.data.val_chunks)

    # ------------------------------------------------------------------ the loop

    def run(self, handle_signals: bool = True) -> TrainResult:
        """Train until a limit or a signal; save; print the summary; return the result."""
        cfg = self.config
        if cfg.resume and (done := self.stop_reason()) is not None:
            result = self.result("complete", Session(self.iteration, 0), done_by=done)
        else:
            with StopSignals(enabled=handle_signals) as self.signals, self.outputs_claimed(), \
                    limit_threads(cfg.threads):
                for line in report.start_block(cfg, self.model, self.data, self.iteration,
                                               self.planned_iterations(), self.best_path()):
                    self.progress.say(line)
                result = self.loop()
        self.progress.say(report.summary(result))
        return result

    @contextlib.contextmanager
    def outputs_claimed(self) -> Iterator[None]:
        """For the life of the run: fail before the first iteration, not at the first save,
        if the checkpoint or the curves could not be written."""
        cfg = self.config
        if cfg.plot:
            self.plotter = load_plotter()
        # path checked as a save would, this run's lock held, another run's files kept
        with ckpt.claim_checkpoint(cfg.checkpoint, cfg.overwrite, cfg.resume):
            yield

    def loop(self) -> TrainResult:
        """Iterate until a stop reason, evaluate and save at the end; the run's result."""
        cfg = self.config
        self.session = session = Session(self.iteration, cfg.batch_size * cfg.seq_length)
        self.progress.start(total=self.planned_iterations(), initial=self.iteration)
        try:
            while (reason := self.stop_reason()) is None:
                loss = self.train_step()
                if not math.isfinite(loss):
                    self.diverged(loss)
                self.smoothed_loss = smooth(self.smoothed_loss, loss)
                rate = session.rate(self.iteration)
                self.progress.update(self.iteration, self.epoch_progress(), self.smoothed_loss,
                                     self.last_val, rate)
                if cfg.eval_every and self.iteration % cfg.eval_every == 0:
                    self.evaluate_and_save(rate, periodic=True)
                if cfg.sample_every and self.iteration % cfg.sample_every == 0:
                    self.print_sample()
            if self.last_eval_iteration != self.iteration:
                self.evaluate_and_save(session.rate(self.iteration))
            else:
                self.save()  # again: a sample may have moved the RNG since the last save
        finally:
            self.progress.close()
        return self.result(reason, session)

    def planned_iterations(self) -> int | None:
        """The last iteration number from --max-iters / --max-epochs; None if only time-limited."""
        cfg = self.config
        limits = []
        if cfg.max_iters > 0:
            limits.append(cfg.max_iters)
        if cfg.max_epochs > 0:
            # (less a rounding margin: max_epochs extended on resume is a float sum)
            limits.append(math.ceil(cfg.max_epochs * self.batches.chunks_per_epoch - 1e-9))
        return min(limits) if limits else None

    def stop_reason(self) -> str | None:
        """Why the run stops before the next iteration, or None to go on."""
        cfg = self.config
        planned = self.planned_iterations()
        if self.signals.received:
            return self.signals.received
        if planned is not None and self.iteration >= planned:
            return "max_iters" if planned == cfg.max_iters else "max_epochs"
        if cfg.time_limit > 0 and self.train_seconds() >= cfg.time_limit:
            return "time_limit"
        if cfg.patience > 0 and self.watch.since_best >= cfg.patience:
            return "patience"
        return None

    def train_seconds(self) -> float:
        """Training time of the whole run: the sessions before this one and this one."""
        return self.seconds_before + self.session.elapsed()

    # ------------------------------------------------------------------ evaluation and samples

    def evaluate_and_save(self, rate: float, periodic: bool = False) -> None:
        """Validation loss, log line, checkpoint, and the best checkpoint when it improved.
        Only the periodic evaluations (every --eval-every) count for --patience and the
        plateau schedule, so that a run stopped and resumed counts as one that went on."""
        cfg = self.config
        val = self.evaluate()
        if val is not None and not math.isfinite(val):  # never save diverged parameters
            self.diverged(val, what="validation loss", at=self.iteration)
        if periodic and val is not None:
            plateau = cfg.plateau_patience if cfg.lr_schedule == "plateau" else 0
            self.watch.observe(val, plateau, cfg.lr_decay)
        self.last_val = val
        self.last_eval_iteration = self.iteration
        improved = val is not None and (self.best_val is None or val < self.best_val)
        if improved:
            self.best_val, self.best_iteration = val, self.iteration
        self.log(rate)
        self.progress.say(report.eval_line(self.iteration, self.epoch_progress(),
                                           self.smoothed_loss, self.last_val, rate))
        self.save()
        if improved:
            self.save(self.best_path())
        if cfg.plot and cfg.log and cfg.checkpoint:
            self.plotter([cfg.log], os.path.splitext(cfg.checkpoint)[0] + ".png")

    def print_sample(self) -> None:
        cfg = self.config
        if cfg.quiet:
            return
        text = "".join(iter_sample(self.model, self.vocab, cfg.sample_length,
                                   rng=self.sample_rng, backend=cfg.backend))
        self.progress.say(f"--- sample at iteration {self.iteration} ---\n{text}\n---")

    def diverged(self, loss: float, what: str = "training loss", at: int | None = None) -> None:
        self.progress.close()
        at = self.iteration + 1 if at is None else at
        where = (f"the last good checkpoint is {self.last_saved[0]} (iteration "
                 f"{self.last_saved[1]})" if self.last_saved else "no checkpoint was written")
        raise DivergedError(f"{what} became {loss} at iteration {at}; stopped; {where}; "
                            "try a lower --learning-rate or --grad-clip")

    def epoch_progress(self) -> float:
        """Epochs completed, as a fraction: 1.5 is halfway through the second epoch."""
        return self.iteration / self.batches.chunks_per_epoch

    # ------------------------------------------------------------------ saving

    def header(self) -> dict[str, Any]:
        """The JSON part of a checkpoint: enough to continue this run exactly."""
        pos = self.batches.position
        return {
            "train_config": dataclasses.asdict(self.config),
            "iteration": self.iteration,
            "position": {"epoch": pos.epoch, "step": pos.step},
            "rng_state": self.sample_rng.bit_generator.state,
            "optimizer": self.optimizer.counters(),
            "smoothed_loss": self.smoothed_loss,
            "val_loss": self.last_val,
            "best_val_loss": self.best_val,
            "best_iteration": self.best_iteration,
            "chars_seen": self.iteration * self.config.batch_size * self.config.seq_length,
            "corpus": self.data.name,
            "corpus_chars": self.data.chars,
            "corpus_sha256": self.data.sha256,
            "loss_watch": self.watch.as_dict(),
            "train_seconds": self.train_seconds(),
        }

    def best_path(self) -> str | None:
        return best_path(self.config.checkpoint) if self.config.checkpoint else None

    def save(self, path: str | None = None) -> None:
        """Write the checkpoint (or the one at path); nothing without a checkpoint path."""
        path = path or self.config.checkpoint
        if not path:
            return
        ckpt.save_checkpoint(path, self.model, self.vocab, self.header(),
                             self.optimizer.state_arrays(), self.h)
        if path == self.config.checkpoint:
            self.last_saved = (path, self.iteration)

    def log(self, rate: float) -> None:
        """One JSON line per evaluation, appended to --log; 'elapsed' is the training time of
        the run, so the curves of a resumed run continue."""
        if not self.config.log:
            return
        record = {"iteration": self.iteration, "epoch": round(self.epoch_progress(), 4),
                  "train_loss": self.smoothed_loss, "val_loss": self.last_val,
                  "train_bpc": report.bits(self.smoothed_loss),
                  "val_bpc": report.bits(self.last_val),
                  "chars_per_sec": round(rate, 1), "lr": self.optimizer.lr,
                  "elapsed": round(self.train_seconds(), 3)}
        try:
            with open(self.config.log, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as exc:
            raise FastrnnError(f"cannot write the log {self.config.log}: "
                               f"{exc.strerror or exc}") from None

    def result(self, reason: str, session: Session, done_by: str | None = None) -> TrainResult:
        """The TrainResult of this session (done_by: the limit that had already ended a
        resumed run, whose stop_reason is then 'complete')."""
        cfg = self.config
        wall = session.elapsed() if reason != "complete" else 0.0
        best = self.best_path()
        return TrainResult(
            iterations=self.iteration,
            chars_seen=self.iteration * cfg.batch_size * cfg.seq_length,
            train_loss=self.smoothed_loss if self.smoothed_loss is not None else math.nan,
            val_loss=self.last_val, best_val_loss=self.best_val, wall_time=wall,
            chars_per_sec=session.chars(self.iteration) / max(wall, 1e-9), stop_reason=reason,
            checkpoint=cfg.checkpoint, model=self.model, vocab=self.vocab,
            best_iteration=self.best_iteration,
            best_checkpoint=(best if best and self.best_iteration is not None
                             and os.path.exists(best) else None),
            resumed=cfg.resume, done_by=done_by)


def load_plotter() -> Any:
    """fastrnn.plot.write_curves, checked at the start of a --plot run: ConfigError with the
    install hint when matplotlib (or fastrnn.plot) is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError("--plot needs matplotlib: pip install 'fastrnn[plot]' "
                          "(or pip install matplotlib)") from None
    try:
        from .plot import write_curves
    except ImportError as exc:
        raise ConfigError(f"--plot needs fastrnn.plot, which this fastrnn lacks ({exc})") \
            from None
    return write_curves


def smooth(mean: float | None, loss: float) -> float:
    """The running mean shown as progress: (1 - SMOOTHING) * mean + SMOOTHING * loss."""
    return loss if mean is None else (1 - SMOOTHING) * mean + SMOOTHING * loss


class Session:
    """The clock and iteration count of this session (since the run was started or resumed)."""

    def __init__(self, start_iteration: int, chars_per_iteration: int):
        self.started = time.monotonic()
        self.start_iteration = start_iteration
        self.chars_per_iteration = chars_per_iteration

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def chars(self, iteration: int) -> int:
        return (iteration - self.start_iteration) * self.chars_per_iteration

    def rate(self, iteration: int) -> float:
        return self.chars(iteration) / max(self.elapsed(), 1e-9)


# ---------------------------------------------------------------------------- signals, threads

class StopSignals:
    """Within ``with StopSignals() as s:``, SIGINT/SIGTERM set ``s.received`` ('sigint' or
    'sigterm'); the loop finishes its iteration, saves and stops. A second SIGINT interrupts at
    once (KeyboardInterrupt), for a run that seems stuck. The previous handlers come back on
    exit. Only the main thread can handle signals; elsewhere (or enabled=False) this does
    nothing."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.received: str | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if self.enabled and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sig, old in self.previous.items():
            signal.signal(sig, old)
        self.previous = {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.received == "sigint" and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = "sigint" if signum == signal.SIGINT else "sigterm"


@contextlib.contextmanager
def limit_threads(threads: int):
    """Run with `threads` threads: threadpool_limits(threads) over every BLAS loaded (numpy's
    and scipy's, the kernel's, which fastrnn.model has imported by now), and the kernel's
    recurrences shared among as many (set_recurrent_threads). Both restored on exit."""
    from threadpoolctl import threadpool_limits

    from .backend import kernel

    with threadpool_limits(limits=threads):
        before = kernel.set_recurrent_threads(threads) if kernel is not None else None
        try:
            yield
        finally:
            if before is not None:
                kernel.set_recurrent_threads(before)
