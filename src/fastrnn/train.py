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
from . import distributed, report
from .checkpoint import best_path
from .config import (
    DEFAULT_TIME_LIMIT,
    TrainConfig,
    budget_given,
    canonical_options,
    check_option_names,
    checkpoint_to_load,
    resolve_config,
)
from .corpus import Corpus, chars_outside, load_corpus, remap_ids, text_corpus
from .data import (
    DEFAULT_CORPUS_NAME,
    BatchIterator,
    Position,
    ValidationChunks,
    Vocabulary,
    char_counts,
    check_length,
    default_corpus,
    describe_chars,
    split_train_val,
    validation_chunks,
)
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
    stop_reason: str  # a limit, 'patience', 'sigint', 'sigterm', 'complete'
    checkpoint: str | None
    model: CharRNN = field(repr=False)
    vocab: Vocabulary = field(repr=False)
    best_iteration: int | None = None  # where best_val_loss came
    best_checkpoint: str | None = None  # the checkpoint of the best validation loss, if written
    resumed: str | None = None  # the checkpoint a resumed run continued
    done_by: str | None = None  # 'complete': the limit that had ended the run before

    @property
    def exit_status(self) -> int:
        """0 for a normal end, 130 after SIGINT, 143 after SIGTERM (128 + signal number)."""
        return EXIT_STATUS.get(self.stop_reason, 0)


def train(
    corpus: str | None = None,
    *,
    text: str | None = None,
    out: TextIO | None = None,
    handle_signals: bool = True,
    **options: Any,
) -> TrainResult:
    """Train as ``fastrnn-train`` does and return a TrainResult.

    corpus: a text file, a directory, or a list of them read as one text (None: the default
    corpus, or on resume the checkpoint's corpus); text: the training text itself instead of
    a file; options: TrainConfig fields (checkpoint=None writes no file; quiet=True prints
    nothing, not even the summary). On
    resume, only the options given here override the checkpoint's configuration, and a
    max_iters, max_epochs or time_limit given is a budget counted from the resume point.
    Raises FastrnnError subclasses for bad input (CorpusError, CheckpointError, ConfigError,
    also for an unknown option name) and DivergedError.
    """
    if corpus is not None:
        options["corpus"] = (
            os.fspath(corpus)
            if isinstance(corpus, (str, os.PathLike))
            else [os.fspath(c) for c in corpus]
        )
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
    val_chunks: ValidationChunks
    val_chars: int


def load_text(cfg: TrainConfig, text: str | None, given: bool) -> Corpus:
    """The training corpus: the text given, the files and directories of cfg.corpus (cached and
    memory-mapped when large, see corpus.py), or the default corpus. On resume without
    TEXT_FILE (given False), each stored corpus path is looked for as stored, then by its name
    beside the checkpoint; cfg.corpus becomes the paths found."""
    if text is not None:
        return text_corpus(text, "<text>")
    if cfg.corpus:
        sources = [cfg.corpus] if isinstance(cfg.corpus, str) else list(cfg.corpus)
        if cfg.resume and not given:
            sources = [find_corpus(path, cfg.resume) for path in sources]
            cfg.corpus = sources[0] if isinstance(cfg.corpus, str) else sources
        return load_corpus(sources, cfg.cache_dir, cfg.verify_cache)
    return text_corpus(default_corpus(), DEFAULT_CORPUS_NAME)


def find_corpus(stored: str, checkpoint: str) -> str:
    """The stored corpus path if it exists, else the file of that name in the checkpoint's
    directory; CorpusError naming both and the fix when neither exists."""
    beside = os.path.join(os.path.dirname(os.path.abspath(checkpoint)), os.path.basename(stored))
    for path in (stored, beside):
        if os.path.exists(path):
            return os.path.abspath(path)
    raise CorpusError(
        f"the corpus of {checkpoint}, {stored}, cannot be found (nor {beside}); "
        f"give the text as TEXT_FILE: fastrnn-train TEXT_FILE --resume "
        f"{checkpoint}"
    )


def prepare_data(
    cfg: TrainConfig, corpus: Corpus, ids: np.ndarray, val_ids: np.ndarray | None, vocab: Vocabulary
) -> TrainData:
    """Training streams over ids (a view: a memory-mapped corpus is not copied) and the
    validation chunks: of val_ids (--val-file) if given, else of the tail of ids."""
    val_fraction = 0.0 if val_ids is not None else cfg.val_fraction
    check_length(ids.size, cfg.batch_size, cfg.seq_length, val_fraction)
    train_ids, tail = split_train_val(ids, val_fraction)
    val_ids = tail if val_ids is None else val_ids
    return TrainData(
        name=corpus.name,
        chars=ids.size,
        sha256=corpus.sha256,
        vocab_size=vocab.size,
        batches=BatchIterator(train_ids, cfg.batch_size, cfg.seq_length),
        val_chunks=validation_chunks(val_ids, cfg.batch_size, cfg.seq_length),
        val_chars=val_ids.size,
    )


def training_ids(cfg: TrainConfig, ids: np.ndarray) -> np.ndarray:
    """The part of the corpus's ids the run trains on: all of them with --val-file, else all
    but the validation tail (as prepare_data splits them)."""
    return ids if cfg.val_file else split_train_val(ids, cfg.val_fraction)[0]


def load_val_ids(cfg: TrainConfig, vocab: Vocabulary) -> np.ndarray:
    """--val-file's indices over the model's vocabulary (which must cover its characters)."""
    assert cfg.val_file is not None
    val = load_corpus([cfg.val_file], cfg.cache_dir, cfg.verify_cache)
    unknown = chars_outside(val.vocab, vocab)
    if unknown:
        raise CorpusError(
            f"{val.name} has {len(unknown)} characters outside the vocabulary "
            f"of the training corpus: {describe_chars(unknown)}"
        )
    return remap_ids(val.ids, val.vocab, vocab)


def model_for(
    cfg: TrainConfig, loaded: ckpt.Checkpoint | None, corpus: Corpus
) -> tuple[CharRNN, Vocabulary]:
    """A new model over the corpus's vocabulary, or the checkpoint's model, whose vocabulary
    must then cover every character of the corpus (see corpus_ids)."""
    if loaded is None:
        vocab = corpus.vocab
        if vocab.size < 2:
            raise CorpusError(
                f"the text has only {vocab.size} distinct character; "
                "at least 2 are needed to predict anything"
            )
        return CharRNN(
            vocab.size,
            cfg.hidden_size,
            num_layers=cfg.num_layers,
            cell=cfg.cell,
            dropout=cfg.dropout,
            dtype=cfg.dtype,
            seed=cfg.seed,
            embedding_size=cfg.embedding_size,
            init=cfg.init,
            char_counts=char_counts(training_ids(cfg, corpus.ids), vocab.size),
        ), vocab
    loaded.model.dropout = cfg.dropout  # training-time only: may change on resume
    return loaded.model, loaded.vocab


def corpus_ids(
    cfg: TrainConfig, vocab: Vocabulary, corpus: Corpus
) -> tuple[np.ndarray, str | None]:
    """(the corpus's indices over vocab, note). The corpus's own indices when vocab is its
    vocabulary (no copy); otherwise remapped, and characters outside vocab are a CorpusError,
    or with --unknown-chars drop left out, with a note saying how many went."""
    unknown = chars_outside(corpus.vocab, vocab)
    if not unknown:
        return remap_ids(corpus.ids, corpus.vocab, vocab), None
    source = cfg.resume or cfg.init_from
    if cfg.unknown_chars != "drop":
        raise CorpusError(
            f"{corpus.name} has {len(unknown)} characters outside the "
            f"vocabulary of {source}: {describe_chars(unknown)}; "
            "--unknown-chars drop leaves them out"
        )
    known = np.array([c in set(vocab.chars) for c in corpus.vocab.chars])
    kept = corpus.ids[known[corpus.ids]]
    if not kept.size:
        raise CorpusError(f"{corpus.name} has no character of the vocabulary of {source}")
    ids = remap_ids(kept, corpus.vocab, vocab)  # kept holds only characters of vocab
    return ids, (
        f"dropped {corpus.ids.size - kept.size:,} occurrences of {len(unknown)} "
        f"characters outside the vocabulary of {source}: {describe_chars(unknown)}"
    )


# ---------------------------------------------------------------------------- the trainer


class Trainer:
    """Holds the state of one training session; ``run`` is the loop."""

    def __init__(
        self,
        options: dict[str, Any],
        text: str | None,
        out: TextIO,
        world: distributed.SingleProcess | None = None,
    ):
        options = canonical_options(options)
        source = checkpoint_to_load(options)
        loaded = ckpt.load_checkpoint(source) if source else None
        self.config = cfg = resolve_config(options, loaded)
        # [mpi] P processes train together; rank r owns streams [lo, hi) of the B (B >= P)
        self.world = world if world is not None else distributed.world()
        self.share = distributed.stream_share(cfg.batch_size, self.world.size, self.world.rank)
        self.progress = report.Progress(out, cfg.quiet or not self.world.is_root)
        with self.world.root_first():  # rank 0 builds the corpus cache, the others map it
            corpus = load_text(cfg, text, given="corpus" in options)
            del text  # the encoded ids (1-4 bytes/char, maybe memory-mapped) are all we keep
            self.model, self.vocab = model_for(cfg, loaded, corpus)
            ids, note = corpus_ids(cfg, self.vocab, corpus)
            if note:
                self.progress.say(f"note: {note}")
            val_ids = load_val_ids(cfg, self.vocab) if cfg.val_file else None
        self.data = prepare_data(cfg, corpus, ids, val_ids, self.vocab)
        self.batches = self.data.batches
        self.optimizer = make_optimizer(
            cfg.optimizer, self.model.params, cfg.learning_rate, backend=cfg.backend
        )
        lo, hi = self.share
        self.threads = self.chosen_threads(hi - lo)
        self.h = self.model.initial_state(hi - lo)  # (B_r, H) carried state of own streams
        # [mpi] the gradients live in one flat buffer, with flag slots, reduced in one call
        self.grad_buffer, self.grads, self.flags = distributed.flat_grads(
            self.model.param_shapes(), self.model.dtype
        )
        self.grads["h0"] = np.empty_like(self.h)
        self.agreed_stop: str | None = None
        self.iteration = 0
        self.smoothed_loss: float | None = None
        self.last_val: float | None = None
        self.best_val: float | None = None
        self.best_iteration: int | None = None
        self.last_saved: tuple[str, int] | None = None
        self.last_eval_iteration: int | None = None
        self.watch = LossWatch()  # the periodic validation losses: patience, plateau
        self.seconds_before = 0.0  # training time of the sessions before this one
        self.session = Session(0, cfg.batch_size * cfg.seq_length)
        self.sample_rng = np.random.default_rng(cfg.seed)
        self.signals = StopSignals(enabled=False)
        self.plotter: Any = None  # fastrnn.plot.write_curves, with --plot
        if cfg.resume:
            assert loaded is not None
            try:
                self.restore(loaded)
            except (KeyError, TypeError, ValueError) as exc:
                if isinstance(exc, CheckpointError):
                    raise
                raise CheckpointError(
                    f"{cfg.resume}: not a training checkpoint, cannot resume "
                    f"from it ({type(exc).__name__}: {exc})"
                ) from None
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
        full_shape = self.model.initial_state(self.config.batch_size).shape
        if loaded.hidden is None or loaded.hidden.shape != full_shape:
            raise CheckpointError(
                f"{self.config.resume}: hidden state missing or of the wrong shape"
            )
        lo, hi = self.share  # [mpi] own streams of the saved (..., B, H) state
        self.h = np.ascontiguousarray(loaded.hidden[..., lo:hi, :], dtype=self.model.dtype)
        saved = int(head.get("processes", 1))
        if saved != self.world.size:
            self.progress.say(
                f"note: this run was saved by {saved} process{'es' * (saved > 1)} and continues "
                f"on {self.world.size} from the same position: the same computation, but the "
                "gradient is summed in another order, so results agree to rounding, not bit "
                "for bit"
            )
        self.sample_rng.bit_generator.state = head["rng_state"]
        self.smoothed_loss = head.get("smoothed_loss")
        self.last_val = head.get("val_loss")
        self.best_val = head.get("best_val_loss")
        self.best_iteration = head.get("best_iteration")
        self.watch = LossWatch.from_dict(head.get("loss_watch"))
        self.seconds_before = float(head.get("train_seconds", 0.0))
        if head.get("corpus_sha256") != self.data.sha256:
            self.progress.say(
                f"note: {self.data.name} differs from the corpus this checkpoint "
                "was trained on; the run continues but is not an exact "
                "continuation"
            )

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
            inputs[lo:hi],
            targets[lo:hi],
            self.h,
            backend=cfg.backend,
            grads=self.grads,
            dropout_key=(cfg.seed, self.iteration, lo),
        )
        if self.world.size > 1:  # [mpi] the gradient of the mean loss over all B*T chars
            loss = self.reduce_step(loss, (hi - lo) / cfg.batch_size)
        if not math.isfinite(loss):
            return loss
        self.optimizer.lr = self.learning_rate()
        self.optimizer.step(
            self.model.params, grads, clip=cfg.grad_clip, max_norm=cfg.max_grad_norm
        )
        self.h = h_last
        self.iteration += 1
        return loss

    def learning_rate(self) -> float:
        """The rate of the next update, by the schedule (schedule.py)."""
        cfg = self.config
        progress = 0.0
        if cfg.lr_schedule == "cosine":
            progress = cosine_progress(
                self.iteration,
                cfg.warmup_iters,
                self.planned_iterations(),
                self.train_seconds(),
                cfg.time_limit,
            )
        return learning_rate(
            cfg.lr_schedule,
            cfg.learning_rate,
            self.iteration,
            warmup_iters=cfg.warmup_iters,
            decay=cfg.lr_decay,
            decay_every=cfg.lr_decay_every,
            progress=progress,
            plateau_scale=self.watch.scale,
        )

    def reduce_step(self, loss: float, weight: float) -> float:
        """[mpi] Sum weight * (gradients, loss) over the processes in one Allreduce, together
        with each one's stop requests; returns the mean loss over all B*T characters and sets
        agreed_stop when a process asked to stop (every process stops after this iteration)."""
        cfg, flags = self.config, self.flags
        self.grad_buffer[: -distributed.N_FLAGS] *= weight
        flags[:] = 0
        flags[distributed.FLAG_LOSS] = loss * weight
        flags[distributed.FLAG_SIGINT] = self.signals.received == "sigint"
        flags[distributed.FLAG_SIGTERM] = self.signals.received == "sigterm"
        flags[distributed.FLAG_TIME] = cfg.time_limit > 0 and self.train_seconds() >= cfg.time_limit
        self.world.allreduce_sum(self.grad_buffer)
        for slot, reason in (
            (distributed.FLAG_SIGINT, "sigint"),
            (distributed.FLAG_SIGTERM, "sigterm"),
            (distributed.FLAG_TIME, "time_limit"),
        ):
            if flags[slot] > 0:
                self.agreed_stop = reason
                break
        return float(flags[distributed.FLAG_LOSS])

    def chosen_threads(self, B: int) -> int:
        """The threads of this run's B streams: --threads 0 chooses (auto_threads); a count
        given is the most it uses (step_threads), and a note says when it uses fewer."""
        cfg, G, H = self.config, self.model.gates, self.model.hidden_size
        if not cfg.threads:
            return auto_threads(B, G, H, self.world.size, usable_cores())
        threads = step_threads(cfg.threads, B, G, H)
        if threads < cfg.threads:
            self.progress.say(
                f"note: --threads {cfg.threads}: a recurrent step of this model has "
                f"B*G*H*H = {B * G * H * H:,} multiply-adds, too few to share (under "
                f"{SHARED_STEP_MADDS:,}); running on {threads} thread"
            )
        return threads

    def evaluate(self) -> float | None:
        """Mean loss per character over the validation tail (forward only, own hidden state).
        [mpi] Each process scores its share of the validation streams; one Allreduce sums."""
        if not self.data.val_chunks:
            return None
        Bv = self.data.val_chunks[0][0].shape[0]
        lo, hi = distributed.rows(Bv, self.world.size, self.world.rank)
        total = np.zeros(1)
        if hi > lo:
            h = self.model.initial_state(hi - lo)
            for inputs, targets in self.data.val_chunks:
                loss, h = self.model.loss(
                    inputs[lo:hi], targets[lo:hi], h, backend=self.config.backend
                )
                total[0] += loss * (hi - lo) / Bv
        self.world.allreduce_sum(total)
        return float(total[0]) / len(self.data.val_chunks)

    # ------------------------------------------------------------------ the loop

    def run(self, handle_signals: bool = True) -> TrainResult:
        """Train until a limit or a signal; save; print the summary; return the result."""
        cfg = self.config
        if cfg.resume and (done := self.stop_reason()) is not None:
            result = self.result("complete", Session(self.iteration, 0), done_by=done)
        else:
            with (
                StopSignals(enabled=handle_signals) as self.signals,
                self.outputs_claimed(),
                limit_threads(self.threads),
            ):
                for line in report.start_block(
                    cfg,
                    self.model,
                    self.data,
                    self.iteration,
                    self.planned_iterations(),
                    self.best_path(),
                ):
                    self.progress.say(line)
                if self.world.size > 1:
                    self.progress.say(
                        f"  processes   {self.world.size} (MPI), "
                        f"{_share_text(cfg.batch_size, self.world.size)}"
                    )
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
        if not self.world.is_root:  # [mpi] rank 0 alone writes checkpoints
            yield
            return
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
                self.progress.update(
                    self.iteration, self.epoch_progress(), self.smoothed_loss, self.last_val, rate
                )
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
        if self.world.size > 1:  # [mpi] signals and the time limit as agreed by all
            if self.agreed_stop:
                return self.agreed_stop
            if planned is not None and self.iteration >= planned:
                return "max_iters" if planned == cfg.max_iters else "max_epochs"
            if cfg.patience > 0 and self.watch.since_best >= cfg.patience:
                return "patience"
            return None
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
        self.progress.say(
            report.eval_line(
                self.iteration, self.epoch_progress(), self.smoothed_loss, self.last_val, rate
            )
        )
        self.save()
        if improved:
            self.save(self.best_path())
        if cfg.plot and cfg.log and cfg.checkpoint and self.world.is_root:
            self.plotter([cfg.log], os.path.splitext(cfg.checkpoint)[0] + ".png")

    def print_sample(self) -> None:
        cfg = self.config
        if cfg.quiet or not self.world.is_root:
            return
        text = "".join(
            iter_sample(
                self.model, self.vocab, cfg.sample_length, rng=self.sample_rng, backend=cfg.backend
            )
        )
        self.progress.say(f"--- sample at iteration {self.iteration} ---\n{text}\n---")

    def diverged(self, loss: float, what: str = "training loss", at: int | None = None) -> None:
        self.progress.close()
        at = self.iteration + 1 if at is None else at
        where = (
            f"the last good checkpoint is {self.last_saved[0]} (iteration {self.last_saved[1]})"
            if self.last_saved
            else "no checkpoint was written"
        )
        raise DivergedError(
            f"{what} became {loss} at iteration {at}; stopped; {where}; "
            "try a lower --learning-rate or --grad-clip"
        )

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
            "processes": self.world.size,
        }

    def best_path(self) -> str | None:
        return best_path(self.config.checkpoint) if self.config.checkpoint else None

    def save(self, path: str | None = None) -> None:
        """Write the checkpoint (or the one at path); nothing without a checkpoint path."""
        path = path or self.config.checkpoint
        if not path:
            return
        states = self.world.gather(self.h)  # [mpi] rank 0 writes every stream's state
        if not self.world.is_root:
            return
        hidden = states[0] if len(states) == 1 else np.concatenate(states, axis=-2)
        ckpt.save_checkpoint(
            path, self.model, self.vocab, self.header(), self.optimizer.state_arrays(), hidden
        )
        if path == self.config.checkpoint:
            self.last_saved = (path, self.iteration)

    def log(self, rate: float) -> None:
        """One JSON line per evaluation, appended to --log; 'elapsed' is the training time of
        the run, so the curves of a resumed run continue."""
        if not self.config.log or not self.world.is_root:
            return
        record = {
            "iteration": self.iteration,
            "epoch": round(self.epoch_progress(), 4),
            "train_loss": self.smoothed_loss,
            "val_loss": self.last_val,
            "train_bpc": report.bits(self.smoothed_loss),
            "val_bpc": report.bits(self.last_val),
            "chars_per_sec": round(rate, 1),
            "lr": self.optimizer.lr,
            "elapsed": round(self.train_seconds(), 3),
        }
        try:
            with open(self.config.log, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as exc:
            raise FastrnnError(
                f"cannot write the log {self.config.log}: {exc.strerror or exc}"
            ) from None

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
            val_loss=self.last_val,
            best_val_loss=self.best_val,
            wall_time=wall,
            chars_per_sec=session.chars(self.iteration) / max(wall, 1e-9),
            stop_reason=reason,
            checkpoint=cfg.checkpoint,
            model=self.model,
            vocab=self.vocab,
            best_iteration=self.best_iteration,
            best_checkpoint=(
                best if best and self.best_iteration is not None and os.path.exists(best) else None
            ),
            resumed=cfg.resume,
            done_by=done_by,
        )


def load_plotter() -> Any:
    """fastrnn.plot.write_curves, checked at the start of a --plot run: ConfigError with the
    install hint when matplotlib (or fastrnn.plot) is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ConfigError(
            "--plot needs matplotlib: pip install 'fastrnn[plot]' (or pip install matplotlib)"
        ) from None
    try:
        from .plot import write_curves
    except ImportError as exc:
        raise ConfigError(f"--plot needs fastrnn.plot, which this fastrnn lacks ({exc})") from None
    return write_curves


def _share_text(batch_size: int, size: int) -> str:
    """'4 streams each' or '3 or 4 streams each'."""
    few, many = batch_size // size, -(-batch_size // size)
    return f"{few} streams each" if few == many else f"{few} or {many} streams each"


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


# A step whose recurrent product has fewer multiply-adds than this (B*G*H*H) keeps its
# recurrence on one thread in the kernel (_recurrent.pxi's PARALLEL_MIN_MADDS): a barrier per
# step would cost more than the second thread gives.
SHARED_STEP_MADDS = 1 << 20

# --threads 0 gives a run whose recurrence the kernel shares one thread per AUTO_THREAD_MADDS
# multiply-adds of a step's recurrent product, B*G*H*H, up to the cores it may use. On 2 idle
# cores the LSTM at H = 100 (B = 32, 1.3 million, 0.65 a thread) trained 1.4x faster on both,
# the default LSTM 2x256 1.6x; the rnn at H = 100 (0.3 million) is slower on two (README,
# threads). Beyond 2 threads the rule is not measured here.
AUTO_THREAD_MADDS = 1 << 19


def auto_threads(B: int, G: int, H: int, processes: int, cores: int) -> int:
    """The threads of --threads 0 for B streams of a cell of G gate blocks and H units: 1 for
    one of several MPI processes (which share the cores) and where the kernel keeps the
    recurrence on one thread (under SHARED_STEP_MADDS), else as AUTO_THREAD_MADDS says."""
    work = B * G * H * H
    if processes > 1 or work < SHARED_STEP_MADDS:
        return 1
    return max(1, min(cores, work // AUTO_THREAD_MADDS))


def step_threads(threads: int, B: int, G: int, H: int) -> int:
    """The threads a run allowed `threads` uses for B streams of a cell of G gate blocks and H
    units: all of them where the kernel shares the recurrence (B*G*H*H >= SHARED_STEP_MADDS),
    else 1. Below that only the batched products would take more threads, and they are too
    small to gain: on 2 idle cores the rnn at H = 100 (B = 32) measured 549k chars/s at 2
    threads against 598k at 1."""
    if threads <= 1 or B * G * H * H < SHARED_STEP_MADDS:
        return 1
    return threads


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@contextlib.contextmanager
def limit_threads(threads: int):
    """Run with `threads` threads: threadpool_limits(threads) over every BLAS loaded (numpy's
    and scipy's, the kernel's, which fastrnn.model has imported by now), and the kernel's
    recurrences shared among as many (set_recurrent_threads). Both restored on exit."""
    from threadpoolctl import threadpool_limits

    from .backend import kernel

    with threadpool_limits(limits=threads):
        if kernel is None:
            yield
            return
        before = kernel.set_recurrent_threads(threads)
        try:
            yield
        finally:
            kernel.set_recurrent_threads(before)
