"""Training: the loop behind ``fastrnn-train``, as a Python function.

    result = fastrnn.train("input.txt", max_iters=2000, checkpoint="run.npz")

One iteration reads a (B, T) chunk, computes the mean loss and all gradients with full BPTT from
the carried hidden state, clips, and takes one optimizer step. The hidden state is carried from
chunk to chunk and reset to zero at the start of each epoch. Everything needed to continue exactly
is in the checkpoint: parameters, optimizer state, hidden state, data position, RNG state.

The options and how they meet a checkpoint are in config.py; what the run prints is in report.py.
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
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from . import checkpoint as ckpt
from . import report
from .config import (DEFAULT_MAX_EPOCHS, TrainConfig, canonical_options, checkpoint_to_load,
                     field_names, resolve_config)
from .data import (DEFAULT_CORPUS_NAME, BatchIterator, Position, Vocabulary, check_length,
                   default_corpus, describe_chars, read_corpus, split_train_val,
                   validation_chunks)
from .errors import CheckpointError, ConfigError, CorpusError, DivergedError
from .model import CharRNN
from .optim import decayed_lr, make_optimizer
from .sample import iter_sample

__all__ = ["train", "Trainer", "TrainResult", "TrainConfig", "best_path", "DEFAULT_MAX_EPOCHS"]

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
    stop_reason: str
    checkpoint: str
    model: CharRNN = field(repr=False)
    vocab: Vocabulary = field(repr=False)

    @property
    def exit_status(self) -> int:
        """0 for a normal end, 130 after SIGINT, 143 after SIGTERM (128 + signal number)."""
        return EXIT_STATUS.get(self.stop_reason, 0)


def best_path(path: str) -> str:
    """Where the best-validation checkpoint goes: beside path, 'run.npz' -> 'run.best.npz'."""
    root, ext = os.path.splitext(path)
    return f"{root}.best{ext or '.npz'}"


def train(corpus: str | None = None, *, text: str | None = None, out: TextIO | None = None,
          handle_signals: bool = True, **options: Any) -> TrainResult:
    """Train as ``fastrnn-train`` does and return a TrainResult.

    corpus: a text file (None: the default corpus, or on resume the checkpoint's corpus);
    text: the training text itself instead of a file; options: TrainConfig fields. On resume,
    only the options given here override the checkpoint's configuration. Raises FastrnnError
    subclasses for bad input (CorpusError, CheckpointError, ConfigError) and DivergedError.
    """
    if corpus is not None:
        options["corpus"] = os.fspath(corpus)
    unknown = sorted(set(canonical_options(options)) - field_names())
    if unknown:
        raise TypeError(f"train() got unknown options {unknown}")
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


def load_text(cfg: TrainConfig, text: str | None) -> tuple[str, str]:
    """(name, text) of the training text: given directly, the corpus file, or the default."""
    if text is not None:
        if not text:
            raise CorpusError("the training text is empty")
        return "<text>", text
    if cfg.corpus:
        return cfg.corpus, read_corpus(cfg.corpus)
    return DEFAULT_CORPUS_NAME, default_corpus()


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
    must then cover every character of the text."""
    if loaded is None:
        vocab = Vocabulary.from_text(text)
        if vocab.size < 2:
            raise CorpusError(f"the text has only {vocab.size} distinct character; "
                              "at least 2 are needed to predict anything")
        return CharRNN(vocab.size, cfg.hidden_size, num_layers=cfg.num_layers,
                       cell=cfg.cell, dropout=cfg.dropout, dtype=cfg.dtype,
                       seed=cfg.seed), vocab
    unknown = loaded.vocab.unknown_chars(text)
    if unknown:
        source = cfg.resume or cfg.init_from
        raise CorpusError(f"{corpus_name} has {len(unknown)} characters outside the "
                          f"vocabulary of {source}: {describe_chars(unknown)}")
    loaded.model.dropout = cfg.dropout   # training-time only: may change on resume
    return loaded.model, loaded.vocab


# ---------------------------------------------------------------------------- the trainer

class Trainer:
    """Holds the state of one training session; ``run`` is the loop."""

    def __init__(self, options: dict[str, Any], text: str | None, out: TextIO):
        options = canonical_options(options)
        source = checkpoint_to_load(options)
        loaded = ckpt.load_checkpoint(source) if source else None
        self.config = cfg = resolve_config(options, loaded)
        self.progress = report.Progress(out, cfg.quiet)
        corpus_name, text = load_text(cfg, text)
        self.model, self.vocab = model_for(cfg, loaded, text, corpus_name)
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
        self.last_saved: tuple[str, int] | None = None
        self.last_eval_iteration: int | None = None
        self.sample_rng = np.random.default_rng(cfg.seed)
        self.signals = StopSignals(enabled=False)
        if cfg.resume:
            assert loaded is not None
            try:
                self.restore(loaded)
            except (KeyError, TypeError, ValueError) as exc:
                if isinstance(exc, ConfigError):
                    raise
                raise CheckpointError(f"{cfg.resume}: not a training checkpoint, cannot resume "
                                      f"from it ({type(exc).__name__}: {exc})") from None

    def restore(self, loaded: ckpt.Checkpoint) -> None:
        """Put back everything a checkpoint saved, so the run continues exactly."""
        head = loaded.header
        self.iteration = int(head["iteration"])
        self.batches.seek(Position(**head["position"]))
        self.optimizer.load_state(loaded.optimizer_state, head["optimizer"]["step"])
        if loaded.hidden is None or loaded.hidden.shape != self.h.shape:
            raise ConfigError(f"{self.config.resume}: hidden state missing or of the wrong shape")
        self.h = np.ascontiguousarray(loaded.hidden, dtype=self.model.dtype)
        self.sample_rng.bit_generator.state = head["rng_state"]
        self.smoothed_loss = head.get("smoothed_loss")
        self.last_val = head.get("val_loss")
        self.best_val = head.get("best_val_loss")
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
        self.optimizer.lr = decayed_lr(cfg.learning_rate, cfg.lr_decay, cfg.lr_decay_every,
                                       self.iteration)
        self.optimizer.step(self.model.params, grads, clip=cfg.grad_clip,
                            max_norm=cfg.max_grad_norm)
        self.h = h_last
        self.iteration += 1
        return loss

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
        with StopSignals(enabled=handle_signals) as self.signals:
            ckpt.check_writable(cfg.checkpoint)
            with limit_threads(cfg.threads):
                for line in report.start_block(cfg, self.model, self.data, self.iteration,
                                               self.planned_iterations(),
                                               best_path(cfg.checkpoint)):
                    self.progress.say(line)
                result = self.loop()
        print(report.summary(result), file=self.progress.out, flush=True)
        return result

    def loop(self) -> TrainResult:
        """Iterate until a stop reason, evaluate and save at the end; the run's result."""
        cfg = self.config
        session = Session(self.iteration, cfg.batch_size * cfg.seq_length)
        self.progress.start(total=self.planned_iterations(), initial=self.iteration)
        try:
            while (reason := self.stop_reason(session)) is None:
                loss = self.train_step()
                if not math.isfinite(loss):
                    self.diverged(loss)
                self.smoothed_loss = smooth(self.smoothed_loss, loss)
                rate = session.rate(self.iteration)
                self.progress.update(self.iteration, self.epoch_progress(), self.smoothed_loss,
                                     self.last_val, rate)
                if cfg.eval_every and self.iteration % cfg.eval_every == 0:
                    self.evaluate_and_save(rate, session.elapsed())
                if cfg.sample_every and self.iteration % cfg.sample_every == 0:
                    self.print_sample()
            if self.last_eval_iteration != self.iteration:
                self.evaluate_and_save(session.rate(self.iteration), session.elapsed())
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
            limits.append(math.ceil(cfg.max_epochs * self.batches.chunks_per_epoch))
        return min(limits) if limits else None

    def stop_reason(self, session: Session) -> str | None:
        """Why the run stops before the next iteration, or None to go on."""
        planned = self.planned_iterations()
        if self.signals.received:
            return self.signals.received
        if planned is not None and self.iteration >= planned:
            return "max_iters" if planned == self.config.max_iters else "max_epochs"
        if self.config.time_limit > 0 and session.elapsed() >= self.config.time_limit:
            return "time_limit"
        return None

    # ------------------------------------------------------------------ evaluation and samples

    def evaluate_and_save(self, rate: float, elapsed: float) -> None:
        """Validation loss, log line, checkpoint, and the best checkpoint when it improved."""
        val = self.evaluate()
        if val is not None and not math.isfinite(val):  # never save diverged parameters
            self.diverged(val, what="validation loss", at=self.iteration)
        self.last_val = val
        self.last_eval_iteration = self.iteration
        improved = val is not None and (self.best_val is None or val < self.best_val)
        if improved:
            self.best_val = val
        self.log(rate, elapsed)
        self.progress.say(report.eval_line(self.iteration, self.epoch_progress(),
                                           self.smoothed_loss, self.last_val, rate))
        self.save()
        if improved:
            self.save(best_path(self.config.checkpoint))

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
            "chars_seen": self.iteration * self.config.batch_size * self.config.seq_length,
            "corpus": self.data.name,
            "corpus_chars": self.data.chars,
            "corpus_sha256": self.data.sha256,
        }

    def save(self, path: str | None = None) -> None:
        path = path or self.config.checkpoint
        ckpt.save_checkpoint(path, self.model, self.vocab, self.header(),
                             self.optimizer.state_arrays(), self.h)
        if path == self.config.checkpoint:
            self.last_saved = (path, self.iteration)

    def log(self, rate: float, elapsed: float) -> None:
        """One JSON line per evaluation, appended to --log."""
        if not self.config.log:
            return
        record = {"iteration": self.iteration, "epoch": round(self.epoch_progress(), 4),
                  "train_loss": self.smoothed_loss, "val_loss": self.last_val,
                  "chars_per_sec": round(rate, 1), "lr": self.optimizer.lr,
                  "elapsed": round(elapsed, 3)}
        try:
            with open(self.config.log, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as exc:
            raise ConfigError(f"cannot write the log {self.config.log}: "
                              f"{exc.strerror or exc}") from None

    def result(self, reason: str, session: Session) -> TrainResult:
        wall = session.elapsed()
        return TrainResult(
            iterations=self.iteration,
            chars_seen=self.iteration * self.config.batch_size * self.config.seq_length,
            train_loss=self.smoothed_loss if self.smoothed_loss is not None else math.nan,
            val_loss=self.last_val, best_val_loss=self.best_val, wall_time=wall,
            chars_per_sec=session.chars(self.iteration) / max(wall, 1e-9), stop_reason=reason,
            checkpoint=self.config.checkpoint, model=self.model, vocab=self.vocab)


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

    from .model import _kernel

    with threadpool_limits(limits=threads):
        before = _kernel.set_recurrent_threads(threads) if _kernel is not None else None
        try:
            yield
        finally:
            if before is not None:
                _kernel.set_recurrent_threads(before)
