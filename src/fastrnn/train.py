"""Training: the loop behind ``fastrnn-train``, as a Python function.

    result = fastrnn.train("input.txt", max_iters=2000, checkpoint="run.npz")

One iteration reads a (B, T) chunk, computes the mean loss and all gradients with full BPTT from
the carried hidden state, clips, and takes one optimizer step. The hidden state is carried from
chunk to chunk and reset to zero at the start of each epoch. Everything needed to continue exactly
is in the checkpoint: parameters, optimizer state, hidden state, data position, RNG state.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from . import checkpoint as ckpt
from . import distributed
from .corpus import Corpus, chars_outside, load_corpus, remap_ids, text_corpus
from .data import (DEFAULT_CORPUS_NAME, BatchIterator, Position, Vocabulary, check_length,
                   default_corpus, describe_chars, split_train_val, validation_chunks)
from .errors import CheckpointError, ConfigError, CorpusError, DivergedError
from .model import BACKENDS, CELLS, CharRNN
from .optim import OPTIMIZERS, decayed_lr, make_optimizer
from .sample import iter_sample

SMOOTHING = 0.02  # weight of the newest loss in the displayed running mean (~50 iterations)
PLAIN_PROGRESS_SECONDS = 10.0  # interval of progress lines when stdout is not a terminal
EXIT_STATUS = {"sigint": 130, "sigterm": 143}
# A fresh run given no limit at all stops after this many epochs, so that a bare
# `fastrnn-train` ends by itself (about 40 s on the default corpus on 2 cores).
DEFAULT_MAX_EPOCHS = 50.0
DURATION_OPTIONS = ("max_iters", "max_epochs", "time_limit")


@dataclass
class TrainConfig:
    """Every training option; the CLI flags are these names in kebab-case.

    0 turns off the optional limits and features: grad_clip, max_grad_norm, max_iters,
    max_epochs, time_limit, eval_every, sample_every. A fresh run given none of max_iters,
    max_epochs, time_limit stops after DEFAULT_MAX_EPOCHS.
    """

    # data
    corpus: str | list[str] | None = None  # files or directories; None: pydoc_data.topics
    val_file: str | None = None        # validation text instead of the tail of the corpus
    cache_dir: str | None = None       # where encoded corpora are cached (default: beside)
    verify_cache: bool = False         # check the cached corpus against the files' sha256
    val_fraction: float = 0.05
    batch_size: int = 32
    seq_length: int = 64
    # model
    model: str = "rnn"                # the cell: rnn, lstm or gru
    num_layers: int = 1
    dropout: float = 0.0
    hidden_size: int = 100
    dtype: str = "float32"
    seed: int = 0
    # optimization
    optimizer: str = "adam"
    learning_rate: float = 2e-3
    lr_decay: float = 1.0
    lr_decay_every: int = 1000
    grad_clip: float = 5.0
    max_grad_norm: float = 0.0
    # duration
    max_iters: int = 0
    max_epochs: float = 0.0
    time_limit: float = 0.0
    # checkpoints and output
    checkpoint: str = "fastrnn.npz"
    resume: str | None = None
    init_from: str | None = None
    eval_every: int = 1000
    sample_every: int = 5000
    sample_length: int = 200
    log: str | None = None
    threads: int = 1
    backend: str = "kernel"
    quiet: bool = False

    def validate(self) -> None:
        """ConfigError naming the first invalid value."""
        positive = ("batch_size", "seq_length", "hidden_size", "num_layers", "lr_decay_every",
                    "threads")
        for name in positive:
            _require(getattr(self, name) >= 1, name, "must be a positive integer")
        non_negative = ("max_iters", "max_epochs", "time_limit", "eval_every", "sample_every",
                        "sample_length", "grad_clip", "max_grad_norm")
        for name in non_negative:
            value = getattr(self, name)
            _require(value >= 0 and math.isfinite(value), name, "must be >= 0 (0 turns it off)")
        _require(0 <= self.val_fraction < 1, "val_fraction", "must be in [0, 1)")
        _require(self.learning_rate > 0 and math.isfinite(self.learning_rate),
                 "learning_rate", "must be > 0")
        _require(0 < self.lr_decay <= 1, "lr_decay", "must be in (0, 1]")
        _require(self.optimizer in OPTIMIZERS, "optimizer", f"must be one of {OPTIMIZERS}")
        _require(self.dtype in ("float32", "float64"), "dtype", "must be float32 or float64")
        _require(self.model in CELLS, "model", f"must be one of {CELLS}")
        _require(0 <= self.dropout < 1, "dropout", "must be in [0, 1)")
        _require(self.backend in BACKENDS, "backend", f"must be one of {BACKENDS}")


def _require(ok: bool, name: str, what: str) -> None:
    if not ok:
        raise ConfigError(f"--{name.replace('_', '-')} {what}")


# Options that define the run; a resumed run must keep them, or it would not be a continuation.
FROZEN_ON_RESUME = ("batch_size", "seq_length", "val_fraction", "hidden_size", "model",
                    "num_layers", "dtype", "seed",
                    "optimizer")


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
        options["corpus"] = (os.fspath(corpus) if isinstance(corpus, (str, os.PathLike))
                             else [os.fspath(c) for c in corpus])
    unknown = sorted(set(options) - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
        raise TypeError(f"train() got unknown options {unknown}")
    trainer = Trainer(options, text=text, out=out if out is not None else sys.stdout)
    return trainer.run(handle_signals=handle_signals)


# ---------------------------------------------------------------------------- the trainer

class Trainer:
    """Holds the state of one training session; ``run`` is the loop."""

    def __init__(self, options: dict[str, Any], text: str | None, out: TextIO,
                 world: distributed.SingleProcess | None = None):
        self.out = out
        self.world = world if world is not None else distributed.world()  # [mpi]
        resume = options.get("resume")
        if resume and options.get("init_from"):
            raise ConfigError("--resume and --init-from exclude each other: --resume continues "
                              "a run, --init-from starts a new one from its weights")
        loaded = ckpt.load_checkpoint(resume) if resume else None
        self.config = self._make_config(options, loaded)
        self.config.validate()
        cfg = self.config
        if cfg.init_from:
            loaded = ckpt.load_checkpoint(cfg.init_from)
            _check_same_model(cfg, loaded, options)
        # [mpi] rank r trains streams [lo, hi) of the B; raises if B < P
        self.share = distributed.stream_share(cfg.batch_size, self.world.size, self.world.rank)
        with self.world.root_first():     # rank 0 builds the corpus cache, the others map it
            corpus = self._load_corpus(text)
            del text
            self.model, self.vocab, ids = self._make_model(loaded, corpus)
            val_ids = self._load_val_ids() if cfg.val_file else None
        self.corpus_name, self.corpus_sha256 = corpus.name, corpus.sha256
        self.corpus_chars = ids.size
        val_fraction = 0.0 if val_ids is not None else cfg.val_fraction
        check_length(ids.size, cfg.batch_size, cfg.seq_length, val_fraction)
        train_ids, tail = split_train_val(ids, val_fraction)
        val_ids = tail if val_ids is None else val_ids
        self.batches = BatchIterator(train_ids, cfg.batch_size, cfg.seq_length)
        self.val_chunks = validation_chunks(val_ids, cfg.batch_size, cfg.seq_length)
        self.val_chars = val_ids.size
        self.optimizer = make_optimizer(cfg.optimizer, self.model.params, cfg.learning_rate,
                                        backend=cfg.backend)
        lo, hi = self.share
        self.h = self.model.initial_state(hi - lo)  # (B_r, H) carried state of this rank's streams
        # [mpi] the gradients live in one flat buffer (plus flag slots) reduced in one call
        self.grad_buffer, self.grads, self.flags = distributed.flat_grads(
            self.model.param_shapes(), self.model.dtype)
        self.grads["h0"] = np.empty_like(self.h)
        self.agreed_stop: str | None = None
        self.iteration = 0
        self.smoothed_loss: float | None = None
        self.last_val: float | None = None
        self.best_val: float | None = None
        self.last_saved: tuple[str, int] | None = None
        self.sample_rng = np.random.default_rng(cfg.seed)
        self.last_eval_iteration: int | None = None
        if resume:
            try:
                self._restore(loaded)
            except (KeyError, TypeError, ValueError) as exc:
                if isinstance(exc, ConfigError):
                    raise
                raise CheckpointError(f"{resume}: not a training checkpoint, cannot resume "
                                      f"from it ({type(exc).__name__}: {exc})") from None
        self.signal_received: str | None = None

    # ------------------------------------------------------------------ setup

    @staticmethod
    def _make_config(options: dict[str, Any], loaded: ckpt.Checkpoint | None) -> TrainConfig:
        """Fresh run: defaults + options. Resume: the checkpoint's config + options, where options
        may not change what defines the run (FROZEN_ON_RESUME), and checkpoints go on being
        written to the resumed file unless --checkpoint says otherwise."""
        if loaded is None:
            if not any(k in options for k in DURATION_OPTIONS):
                options = {**options, "max_epochs": DEFAULT_MAX_EPOCHS}
            return TrainConfig(**options)
        saved = loaded.header.get("train_config", {})
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        base = TrainConfig(**{k: v for k, v in saved.items() if k in known})
        for name in FROZEN_ON_RESUME:
            if name in options and options[name] != getattr(base, name):
                raise ConfigError(
                    f"--{name.replace('_', '-')} cannot change on --resume (the checkpoint has "
                    f"{getattr(base, name)!r}); use --init-from to start a new run from its weights")
        options.setdefault("checkpoint", options["resume"])  # keep writing the file resumed
        return dataclasses.replace(base, init_from=None, **options)

    def _load_corpus(self, text: str | None) -> Corpus:
        """The training corpus: the text given, the files of --corpus (cached, memory-mapped
        when large), or the default corpus."""
        cfg = self.config
        if text is not None:
            return text_corpus(text, "<text>")
        if cfg.corpus:
            sources = [cfg.corpus] if isinstance(cfg.corpus, str) else list(cfg.corpus)
            return load_corpus(sources, cfg.cache_dir, cfg.verify_cache)
        return text_corpus(default_corpus(), DEFAULT_CORPUS_NAME)

    def _load_val_ids(self) -> np.ndarray:
        """--val-file's indices over the model's vocabulary (which must cover its characters)."""
        val = load_corpus([self.config.val_file], self.config.cache_dir, self.config.verify_cache)
        unknown = chars_outside(val.vocab, self.vocab)
        if unknown:
            raise CorpusError(f"{val.name} has {len(unknown)} characters outside the vocabulary "
                              f"of the training corpus: {describe_chars(unknown)}")
        return remap_ids(val.ids, val.vocab, self.vocab)

    def _make_model(self, loaded: ckpt.Checkpoint | None,
                    corpus: Corpus) -> tuple[CharRNN, Vocabulary, np.ndarray]:
        """(model, vocabulary, the corpus's indices over it): a new model over the corpus's
        vocabulary, or the checkpoint's model, whose vocabulary must then cover the corpus."""
        cfg = self.config
        if loaded is None:
            vocab = corpus.vocab
            if vocab.size < 2:
                raise CorpusError(f"the text has only {vocab.size} distinct character; "
                                  "at least 2 are needed to predict anything")
            return CharRNN(vocab.size, cfg.hidden_size, num_layers=cfg.num_layers,
                           cell=cfg.model, dropout=cfg.dropout, dtype=cfg.dtype,
                           seed=cfg.seed), vocab, corpus.ids
        unknown = chars_outside(corpus.vocab, loaded.vocab)
        if unknown:
            source = cfg.resume or cfg.init_from
            raise CorpusError(f"{corpus.name} has {len(unknown)} characters outside the "
                              f"vocabulary of {source}: {describe_chars(unknown)}")
        loaded.model.dropout = cfg.dropout   # training-time only: may change on resume
        return loaded.model, loaded.vocab, remap_ids(corpus.ids, corpus.vocab, loaded.vocab)

    def _restore(self, loaded: ckpt.Checkpoint) -> None:
        """Put back everything a checkpoint saved, so the run continues exactly."""
        head = loaded.header
        self.iteration = int(head["iteration"])
        self.batches.seek(Position(**head["position"]))
        self.optimizer.load_state(loaded.optimizer_state, head["optimizer"]["step"])
        full_shape = self.model.initial_state(self.config.batch_size).shape
        if loaded.hidden is None or loaded.hidden.shape != full_shape:
            raise ConfigError(f"{self.config.resume}: hidden state missing or of the wrong shape")
        lo, hi = self.share      # [mpi] this rank's streams of the saved (..., B, H) state
        self.h = np.ascontiguousarray(loaded.hidden[..., lo:hi, :], dtype=self.model.dtype)
        saved_p = int(head.get("processes", 1))
        if saved_p != self.world.size:
            self.say(f"note: this run was saved by {saved_p} process{'es' * (saved_p > 1)} and "
                     f"continues on {self.world.size} from the same position: the same "
                     "computation, but the gradient is summed in another order, so results "
                     "agree to rounding, not bit for bit")
        self.sample_rng.bit_generator.state = head["rng_state"]
        self.smoothed_loss = head.get("smoothed_loss")
        self.last_val = head.get("val_loss")
        self.best_val = head.get("best_val_loss")
        if head.get("corpus_sha256") != self.corpus_sha256:
            self.say(f"note: {self.corpus_name} differs from the corpus this checkpoint was "
                     "trained on; the run continues but is not an exact continuation")

    # ------------------------------------------------------------------ one iteration

    def train_step(self) -> float:
        """One chunk: loss and gradients, clipping, one optimizer step. Returns the loss; a
        non-finite loss leaves the parameters untouched."""
        cfg = self.config
        inputs, targets, starts_epoch = next(self.batches)
        if starts_epoch:
            self.h = np.zeros_like(self.h)  # each epoch reads the streams from their start
        lo, hi = self.share
        loss, grads, h_last = self.model.loss_and_grads(
            inputs[lo:hi], targets[lo:hi], self.h, backend=cfg.backend, grads=self.grads,
            dropout_key=(cfg.seed, self.iteration, lo))
        if self.world.size > 1:    # [mpi] the gradient of the mean loss over all B*T chars
            loss = self._reduce_step(loss, (hi - lo) / cfg.batch_size)
        if not math.isfinite(loss):
            return loss
        self.optimizer.lr = decayed_lr(cfg.learning_rate, cfg.lr_decay, cfg.lr_decay_every,
                                       self.iteration)
        self.optimizer.step(self.model.params, grads, clip=cfg.grad_clip,
                            max_norm=cfg.max_grad_norm)
        self.h = h_last
        self.iteration += 1
        return loss

    def _reduce_step(self, loss: float, weight: float) -> float:
        """[mpi] Sum weight * (gradients, loss) over the ranks in one Allreduce, together with
        each rank's stop requests; returns the mean loss over all B*T characters and records
        in agreed_stop why every rank stops after this iteration, if one asked to."""
        flags = self.flags
        self.grad_buffer[: -distributed.N_FLAGS] *= weight
        flags[:] = 0
        flags[distributed.FLAG_LOSS] = loss * weight
        flags[distributed.FLAG_SIGINT] = self.signal_received == "sigint"
        flags[distributed.FLAG_SIGTERM] = self.signal_received == "sigterm"
        flags[distributed.FLAG_TIME] = (self.config.time_limit > 0 and time.monotonic()
                                        - self.started >= self.config.time_limit)
        self.world.allreduce_sum(self.grad_buffer)
        for slot, reason in ((distributed.FLAG_SIGINT, "sigint"),
                             (distributed.FLAG_SIGTERM, "sigterm"),
                             (distributed.FLAG_TIME, "time_limit")):
            if flags[slot] > 0:
                self.agreed_stop = reason
                break
        return float(flags[distributed.FLAG_LOSS])

    def evaluate(self) -> float | None:
        """Mean loss per character over the validation tail (forward only, own hidden state).
        [mpi] Each rank scores its share of the validation streams; one Allreduce sums them."""
        if not self.val_chunks:
            return None
        Bv = self.val_chunks[0][0].shape[0]
        lo, hi = distributed.rows(Bv, self.world.size, self.world.rank)
        total = np.zeros(1)
        if hi > lo:
            h = self.model.initial_state(hi - lo)
            for inputs, targets in self.val_chunks:
                loss, h = self.model.loss(inputs[lo:hi], targets[lo:hi], h,
                                          backend=self.config.backend)
                total[0] += loss * (hi - lo) / Bv
        self.world.allreduce_sum(total)
        return float(total[0]) / len(self.val_chunks)

    # ------------------------------------------------------------------ plan and stop

    def planned_iterations(self) -> int | None:
        """The last iteration number from --max-iters / --max-epochs; None if only time-limited."""
        cfg = self.config
        limits = []
        if cfg.max_iters > 0:
            limits.append(cfg.max_iters)
        if cfg.max_epochs > 0:
            limits.append(math.ceil(cfg.max_epochs * self.batches.chunks_per_epoch))
        return min(limits) if limits else None

    def stop_reason(self, started: float) -> str | None:
        planned = self.planned_iterations()
        if self.world.size > 1:    # [mpi] signals and time limit as agreed by every rank
            if self.agreed_stop:
                return self.agreed_stop
            if planned is not None and self.iteration >= planned:
                return "max_iters" if planned == self.config.max_iters else "max_epochs"
            return None
        if self.signal_received:
            return self.signal_received
        if planned is not None and self.iteration >= planned:
            return "max_iters" if planned == self.config.max_iters else "max_epochs"
        if self.config.time_limit > 0 and time.monotonic() - started >= self.config.time_limit:
            return "time_limit"
        return None

    # ------------------------------------------------------------------ the loop

    def run(self, handle_signals: bool = True) -> TrainResult:
        cfg = self.config
        previous = self._install_signal_handlers() if handle_signals else {}
        try:
            if self.world.is_root:
                ckpt.check_writable(cfg.checkpoint)
            limiter = _limit_threads(cfg.threads)
            self.print_start_block()
        except BaseException:
            self._restore_signal_handlers(previous)
            raise
        progress = Progress(self.out, total=self.planned_iterations(), initial=self.iteration,
                            quiet=cfg.quiet or not self.world.is_root)
        started = self.started = time.monotonic()
        start_iteration = self.iteration
        try:
            reason = self._loop(progress, started)
            if self.last_eval_iteration != self.iteration:
                self._evaluate_and_save(progress, self._rate(start_iteration, started),
                                        time.monotonic() - started)
            else:
                self._save()  # again: a sample may have moved the RNG since the last save
        finally:
            progress.close()
            self._restore_signal_handlers(previous)
            limiter.restore_original_limits()
        wall = time.monotonic() - started
        result = self._result(reason, start_iteration, wall)
        if self.world.is_root:
            self.print_summary(result)
        return result

    def _loop(self, progress: "Progress", started: float) -> str:
        """Iterate until a stop reason (limit reached or signal); return it."""
        start_iteration = self.iteration
        while (reason := self.stop_reason(started)) is None:
            loss = self.train_step()
            if not math.isfinite(loss):
                self._diverged(loss, progress)
            self.smoothed_loss = (loss if self.smoothed_loss is None else
                                  (1 - SMOOTHING) * self.smoothed_loss + SMOOTHING * loss)
            elapsed = time.monotonic() - started
            rate = self._session_chars(start_iteration) / max(elapsed, 1e-9)
            progress.update(self.iteration, self.epoch_progress(), self.smoothed_loss,
                            self.last_val, rate)
            self._periodic(progress, rate, elapsed)
        return reason

    def _periodic(self, progress: "Progress", rate: float, elapsed: float) -> None:
        cfg = self.config
        if cfg.eval_every and self.iteration % cfg.eval_every == 0:
            self._evaluate_and_save(progress, rate, elapsed)
        if cfg.sample_every and self.iteration % cfg.sample_every == 0 and not cfg.quiet \
                and self.world.is_root:
            text = "".join(iter_sample(self.model, self.vocab, cfg.sample_length,
                                       rng=self.sample_rng, backend=cfg.backend))
            progress.write(f"--- sample at iteration {self.iteration} ---\n{text}\n---")

    def _evaluate_and_save(self, progress: "Progress", rate: float, elapsed: float) -> None:
        val = self.evaluate()
        if val is not None and not math.isfinite(val):  # never save diverged parameters
            self._diverged(val, progress, what="validation loss", at=self.iteration)
        self.last_val = val
        self.last_eval_iteration = self.iteration
        improved = self.last_val is not None and (self.best_val is None
                                                  or self.last_val < self.best_val)
        if improved:
            self.best_val = self.last_val
        self._log(rate, elapsed)
        progress.write(self._eval_line(rate))
        self._save()
        if improved:
            self._save(best_path(self.config.checkpoint))

    def _eval_line(self, rate: float) -> str:
        val = "n/a" if self.last_val is None else f"{self.last_val:.4f}"
        train = "n/a" if self.smoothed_loss is None else f"{self.smoothed_loss:.4f}"
        return (f"iter {self.iteration:>7}  epoch {self.epoch_progress():6.2f}  train {train}  "
                f"val {val}  {rate:,.0f} chars/s")

    def _diverged(self, loss: float, progress: "Progress", what: str = "training loss",
                  at: int | None = None) -> None:
        progress.close()
        at = self.iteration + 1 if at is None else at
        where = (f"the last good checkpoint is {self.last_saved[0]} (iteration "
                 f"{self.last_saved[1]})" if self.last_saved else "no checkpoint was written")
        raise DivergedError(f"{what} became {loss} at iteration {at}; stopped; {where}; "
                            "try a lower --learning-rate or --grad-clip")

    # ------------------------------------------------------------------ bookkeeping

    def epoch_progress(self) -> float:
        """Epochs completed, as a fraction: 1.5 is halfway through the second epoch."""
        return self.iteration / self.batches.chunks_per_epoch

    def _session_chars(self, start_iteration: int) -> int:
        return (self.iteration - start_iteration) * self.config.batch_size * self.config.seq_length

    def _rate(self, start_iteration: int, started: float) -> float:
        return self._session_chars(start_iteration) / max(time.monotonic() - started, 1e-9)

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
            "corpus": self.corpus_name,
            "corpus_chars": self.corpus_chars,
            "corpus_sha256": self.corpus_sha256,
            "processes": self.world.size,
        }

    def _save(self, path: str | None = None) -> None:
        """Rank 0 writes; the others only hand it their streams' hidden state. [mpi]"""
        path = path or self.config.checkpoint
        states = self.world.gather(self.h)
        if not self.world.is_root:
            return
        hidden = states[0] if len(states) == 1 else np.concatenate(states, axis=-2)
        ckpt.save_checkpoint(path, self.model, self.vocab, self.header(),
                             self.optimizer.state_arrays(), hidden)
        if path == self.config.checkpoint:
            self.last_saved = (path, self.iteration)

    def _log(self, rate: float, elapsed: float) -> None:
        if not self.config.log or not self.world.is_root:
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

    def _result(self, reason: str, start_iteration: int, wall: float) -> TrainResult:
        chars = self._session_chars(start_iteration)
        return TrainResult(
            iterations=self.iteration,
            chars_seen=self.iteration * self.config.batch_size * self.config.seq_length,
            train_loss=self.smoothed_loss if self.smoothed_loss is not None else math.nan,
            val_loss=self.last_val, best_val_loss=self.best_val, wall_time=wall,
            chars_per_sec=chars / max(wall, 1e-9), stop_reason=reason,
            checkpoint=self.config.checkpoint, model=self.model, vocab=self.vocab)

    # ------------------------------------------------------------------ signals

    def _install_signal_handlers(self) -> dict[int, Any]:
        """SIGINT/SIGTERM set a flag; the loop finishes its iteration, saves and stops. A second
        SIGINT interrupts at once (KeyboardInterrupt), for a run that seems stuck."""
        import threading

        if threading.current_thread() is not threading.main_thread():
            return {}

        def handler(signum, frame):
            if self.signal_received == "sigint" and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.signal_received = "sigint" if signum == signal.SIGINT else "sigterm"

        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
        return previous

    @staticmethod
    def _restore_signal_handlers(previous: dict[int, Any]) -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    # ------------------------------------------------------------------ output

    def say(self, line: str) -> None:
        if not self.config.quiet and self.world.is_root:
            print(line, file=self.out, flush=True)

    def print_start_block(self) -> None:
        cfg, b = self.config, self.batches
        planned = self.planned_iterations()
        plan = (f"{planned:,} iterations ({planned / b.chunks_per_epoch:.2f} epochs)"
                if planned is not None else "until the time limit")
        if cfg.time_limit > 0 and planned is not None:
            plan += f" or {cfg.time_limit:g} s, whichever comes first"
        start = (f"resuming {cfg.resume} at iteration {self.iteration}" if cfg.resume else
                 f"fine-tuning from {cfg.init_from}" if cfg.init_from else "new run")
        lines = [
            f"fastrnn-train: {start}",
            f"  corpus      {self.corpus_name}: {self.corpus_chars:,} characters, "
            f"vocabulary {self.vocab.size}; validation tail {self.val_chars:,} "
            f"({cfg.val_fraction:.1%})",
            f"  model       {_describe_cell(self.model)}, hidden {self.model.hidden_size}, "
            f"{self.model.num_params:,} parameters, {self.model.dtype.name}",
            f"  batches     {cfg.batch_size} streams x {cfg.seq_length} steps = "
            f"{cfg.batch_size * cfg.seq_length:,} chars/iteration; "
            f"{b.chars_per_epoch:,} chars/epoch = {b.chunks_per_epoch:,} iterations",
            f"  plan        {plan}",
            f"  optimizer   {cfg.optimizer}, lr {cfg.learning_rate:g}"
            + (f" x{cfg.lr_decay:g} every {cfg.lr_decay_every}" if cfg.lr_decay < 1 else "")
            + (f", clip ±{cfg.grad_clip:g}" if cfg.grad_clip > 0 else "")
            + (f", max grad norm {cfg.max_grad_norm:g}" if cfg.max_grad_norm > 0 else ""),
            f"  compute     backend {cfg.backend}; {blas_description()}"
            + (f"; {self.world.size} processes (MPI), {_share_text(b.batch_size, self.world.size)}"
               if self.world.size > 1 else ""),
            f"  checkpoint  {cfg.checkpoint} (best: {best_path(cfg.checkpoint)})"
            + (f", every {cfg.eval_every} iterations" if cfg.eval_every else ", at the end"),
        ]
        for line in lines:
            self.say(line)

    def print_summary(self, r: TrainResult) -> None:
        val = "n/a" if r.val_loss is None else f"{r.val_loss:.4f}"
        how = {"sigint": "interrupted (SIGINT)", "sigterm": "terminated (SIGTERM)",
               "time_limit": "time limit reached", "max_iters": "done",
               "max_epochs": "done"}.get(r.stop_reason, r.stop_reason)
        print(f"{how}: {r.iterations:,} iterations, {r.chars_seen:,} characters seen, "
              f"train loss {r.train_loss:.4f}, val loss {val} nats/char, "
              f"{r.wall_time:.1f} s, {r.chars_per_sec:,.0f} chars/s; checkpoint {r.checkpoint}",
              file=self.out, flush=True)


def _check_same_model(cfg: TrainConfig, loaded: ckpt.Checkpoint, options: dict[str, Any]) -> None:
    """--init-from keeps the checkpoint's architecture; a contradicting flag is an error."""
    mcfg = loaded.model.config()
    for name, saved in (("hidden_size", mcfg["hidden_size"]), ("dtype", mcfg["dtype"]),
                        ("model", mcfg["cell"]), ("num_layers", mcfg["num_layers"])):
        if name in options and options[name] != saved:
            raise ConfigError(f"--{name.replace('_', '-')} {options[name]} contradicts "
                              f"--init-from {cfg.init_from}, whose model has {saved}")
    cfg.hidden_size, cfg.dtype = mcfg["hidden_size"], mcfg["dtype"]
    cfg.model, cfg.num_layers = mcfg["cell"], mcfg["num_layers"]


def _share_text(batch_size: int, size: int) -> str:
    """'4 streams each' or '3 or 4 streams each'."""
    few, many = batch_size // size, -(-batch_size // size)
    return f"{few} streams each" if few == many else f"{few} or {many} streams each"


def _describe_cell(model: CharRNN) -> str:
    """'vanilla RNN', '2-layer LSTM, dropout 0.5', ..."""
    name = {"rnn": "vanilla RNN", "lstm": "LSTM", "gru": "GRU"}[model.cell]
    layers = f"{model.num_layers}-layer " if model.num_layers > 1 else ""
    return layers + name + (f", dropout {model.dropout:g}" if model.dropout else "")


# ---------------------------------------------------------------------------- threads, BLAS

def _limit_threads(threads: int):
    """threadpool_limits(threads) over every BLAS loaded: numpy's and scipy's (the kernel's),
    which fastrnn.model has imported by now."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads)


def blas_description() -> str:
    """'BLAS openblas 0.3.28 (scipy), 1 thread; ...' from threadpoolctl, for the start block."""
    from threadpoolctl import threadpool_info

    parts = []
    for info in threadpool_info():
        if info.get("user_api") != "blas":
            continue
        path = info.get("filepath", "")
        owner = ("scipy's, used by the kernel" if f"scipy.libs{os.sep}" in path
                 or f"{os.sep}scipy{os.sep}" in path else "numpy's" if "numpy" in path
                 else os.path.basename(path))
        n = info.get("num_threads")
        parts.append(f"{info.get('internal_api')} {info.get('version') or ''} ({owner}) "
                     f"{n} thread{'s' if n != 1 else ''}".replace("  ", " "))
    return "BLAS " + ("; ".join(parts) if parts else "not detected")


# ---------------------------------------------------------------------------- progress

class Progress:
    """A tqdm bar on a terminal; plain lines every PLAIN_PROGRESS_SECONDS otherwise; nothing
    when quiet. ``write`` prints a line without breaking the bar."""

    def __init__(self, out: TextIO, total: int | None, initial: int, quiet: bool):
        self.out = out
        self.quiet = quiet
        self.bar = None
        self.last_line = time.monotonic()
        isatty = getattr(out, "isatty", lambda: False)()
        if not quiet and isatty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, file=out, unit="it",
                            dynamic_ncols=True, smoothing=0.1)

    def update(self, iteration: int, epoch: float, loss: float, val: float | None,
               rate: float) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.n = iteration
            self.bar.set_description(f"epoch {epoch:.2f}", refresh=False)
            self.bar.set_postfix_str(f"loss {loss:.3f}" + (f" val {val:.3f}" if val else "")
                                     + f" {rate:,.0f} chars/s", refresh=False)
            self.bar.update(0)
        elif time.monotonic() - self.last_line >= PLAIN_PROGRESS_SECONDS:
            self.last_line = time.monotonic()
            print(f"iter {iteration:>7}  epoch {epoch:6.2f}  loss {loss:.4f}  "
                  f"{rate:,.0f} chars/s", file=self.out, flush=True)

    def write(self, line: str) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.write(line, file=self.out)
        else:
            print(line, file=self.out, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
