"""Training options: ``TrainConfig``, its validation, and how options meet a checkpoint.

A fresh run is the defaults plus the options given. A resumed run (``--resume``) is the
checkpoint's configuration plus the options given, which may not change what defines the run
(FROZEN_ON_RESUME). A fine-tuning run (``--init-from``) takes its architecture from the
checkpoint's model (MODEL_OPTIONS); a flag that contradicts it is an error. ``resolve_config``
is the one function that applies these rules.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from dataclasses import dataclass
from typing import Any

from .checkpoint import Checkpoint
from .errors import ConfigError
from .init import SCHEMES as INIT_SCHEMES
from .model import BACKENDS, CELLS
from .optim import OPTIMIZERS
from .schedule import SCHEDULES

# A fresh run given no limit at all stops after this many seconds of training, so that a bare
# `fastrnn-train` ends by itself; the defaults above are chosen for this budget.
DEFAULT_TIME_LIMIT = 300.0
DURATION_OPTIONS = ("max_iters", "max_epochs", "time_limit")
UNKNOWN_CHARS = ("error", "drop")

# Former option names still accepted (from the Python API and stored checkpoint headers).
OPTION_ALIASES = {"model": "cell"}


@dataclass(frozen=True)
class Default:
    """The default of an option and the reason for it, which --help shows after the value."""

    value: Any
    reason: str = ""

    def help(self, shown: str | None = None) -> str:
        """'default 100: reason' for --help (shown: the value as it should be printed)."""
        text = f"default {self.value if shown is None else shown}"
        return f"{text}: {self.reason}" if self.reason else text


# The defaults of the model and optimization options: change a value and its reason here only.
DEFAULTS = {
    "batch_size": Default(
        32, "enough rows for BLAS to run efficiently, few enough that each stream is long"
    ),
    "seq_length": Default(64, "the length of backpropagation through time"),
    "cell": Default(
        "lstm",
        "in five minutes on two cores a 2-layer LSTM of 256 reached 1.466 nats/char on "
        "tinyshakespeare against 1.568 for a vanilla rnn of 256, both at Adam 2e-3 with the "
        "cosine decay (README, learning quality)",
    ),
    "num_layers": Default(2, "two layers learn more per minute than one wider layer"),
    "dropout": Default(0.0, "a five-minute run does not overfit tinyshakespeare"),
    "hidden_size": Default(256, "the size that learns fastest in five minutes on two cores"),
    "embedding_size": Default(
        256,
        "an embedding as wide as the layers learns faster per step than one-hot rows "
        "and as fast as the PyTorch script on 5,000-character vocabularies",
    ),
    "init": Default(
        "default",
        "N(0, 1) embedding rows (N(0, 4) one-hot rows), orthogonal input matrices above "
        "layer 0, LSTM forget bias 0, the head bias at the training text's character "
        "frequencies: ahead of the PyTorch script per step (fastrnn.init)",
    ),
    "dtype": Default(
        "float32",
        "about twice the speed of float64 and plenty for training; float64 for exact comparisons",
    ),
    "optimizer": Default("adam", "converges fastest with little tuning"),
    "learning_rate": Default(
        3e-3,
        "with the cosine decay, 2,300 steps of the default LSTM on tinyshakespeare (five "
        "minutes on two cores) reached 1.450 nats/char at 3e-3 and at 4e-3, 1.474 at 2e-3",
    ),
    "lr_schedule": Default(
        "cosine",
        "a decay to 10% at the planned end of the run ended lower in five minutes (LSTM 2x256: "
        "1.466 against 1.521 nats/char at a constant rate); constant when the run has no "
        "planned end",
    ),
    "warmup_iters": Default(0, "no warmup"),
    "grad_clip": Default(5.0, "the classic char-RNN's clip"),
}


def default(name: str) -> Any:
    return DEFAULTS[name].value


@dataclass
class TrainConfig:
    """Every training option; the CLI flags are these names in kebab-case.

    0 turns off the optional limits and features: grad_clip, max_grad_norm, max_iters,
    max_epochs, time_limit, eval_every, sample_every, patience, warmup_iters. A fresh run
    given none of max_iters, max_epochs, time_limit stops after DEFAULT_TIME_LIMIT seconds.
    time_limit is the training time of the whole run (a resumed run goes on counting).
    """

    # data
    corpus: str | list[str] | None = None  # files or directories; None: pydoc_data.topics
    val_file: str | None = None  # validation text instead of the tail of the corpus
    cache_dir: str | None = None  # where encoded corpora are cached (default: beside)
    verify_cache: bool = False  # check the cached corpus against the files' sha256
    val_fraction: float = 0.05
    batch_size: int = default("batch_size")
    seq_length: int = default("seq_length")
    # model
    cell: str = default("cell")  # rnn, lstm or gru (CLI: --model or --cell)
    num_layers: int = default("num_layers")
    dropout: float = default("dropout")
    hidden_size: int = default("hidden_size")
    embedding_size: int = default("embedding_size")  # 0: one-hot input rows
    init: str = default("init")  # a name of fastrnn.init.SCHEMES
    dtype: str = default("dtype")
    seed: int = 0
    # optimization
    optimizer: str = default("optimizer")
    learning_rate: float = default("learning_rate")
    lr_schedule: str = default("lr_schedule")  # schedule.SCHEDULES
    warmup_iters: int = default("warmup_iters")
    lr_decay: float = 1.0  # step and plateau schedules: the factor
    lr_decay_every: int = 1000  # step schedule: iterations between reductions
    plateau_patience: int = 2  # plateau schedule: evaluations without improvement
    grad_clip: float = default("grad_clip")
    max_grad_norm: float = 0.0
    # duration
    max_iters: int = 0
    max_epochs: float = 0.0
    time_limit: float = 0.0
    patience: int = 0  # early stopping: evaluations without improvement
    # checkpoints and output
    checkpoint: str | None = "fastrnn.npz"  # None: write no checkpoint at all
    overwrite: bool = False  # a new run may replace another run's checkpoint
    resume: str | None = None
    init_from: str | None = None
    unknown_chars: str = "error"  # resume/init-from text outside the vocabulary: or "drop"
    eval_every: int = 1000
    sample_every: int = 5000
    sample_length: int = 200
    log: str | None = None
    plot: bool = False  # write the loss curves beside the checkpoint
    threads: int = 0  # 0: chosen for the model and the cores (train.auto_threads)
    backend: str = "kernel"
    quiet: bool = False

    def validate(self) -> None:
        """ConfigError naming the first invalid value."""
        positive = (
            "batch_size",
            "seq_length",
            "hidden_size",
            "num_layers",
            "lr_decay_every",
        )
        for name in positive:
            _require(getattr(self, name) >= 1, name, "must be a positive integer")
        non_negative = (
            "max_iters",
            "max_epochs",
            "time_limit",
            "eval_every",
            "sample_every",
            "sample_length",
            "grad_clip",
            "max_grad_norm",
        )
        for name in non_negative:
            value = getattr(self, name)
            _require(value >= 0 and math.isfinite(value), name, "must be >= 0 (0 turns it off)")
        _require(0 <= self.val_fraction < 1, "val_fraction", "must be in [0, 1)")
        _require(
            self.learning_rate > 0 and math.isfinite(self.learning_rate),
            "learning_rate",
            "must be > 0",
        )
        _require(0 < self.lr_decay <= 1, "lr_decay", "must be in (0, 1]")
        _require(self.optimizer in OPTIMIZERS, "optimizer", f"must be one of {OPTIMIZERS}")
        _require(self.dtype in ("float32", "float64"), "dtype", "must be float32 or float64")
        _require(self.cell in CELLS, "cell", f"must be one of {CELLS}")
        _require(0 <= self.dropout < 1, "dropout", "must be in [0, 1)")
        _require(self.backend in BACKENDS, "backend", f"must be one of {BACKENDS}")
        for name in ("embedding_size", "warmup_iters", "patience", "threads"):
            _require(getattr(self, name) >= 0, name, "must be an integer >= 0 (0 turns it off)")
        _require(self.plateau_patience >= 1, "plateau_patience", "must be a positive integer")
        from_checkpoint = bool(self.resume or self.init_from)  # may hold a "custom" scheme
        _require(
            self.init in INIT_SCHEMES or (self.init == "custom" and from_checkpoint),
            "init",
            f"must be one of {tuple(INIT_SCHEMES)}",
        )
        _require(self.lr_schedule in SCHEDULES, "lr_schedule", f"must be one of {SCHEDULES}")
        if self.lr_schedule == "constant":
            _require(self.lr_decay == 1, "lr_decay", "needs --lr-schedule step or plateau")
        if self.lr_schedule == "plateau":
            _require(
                self.lr_decay < 1,
                "lr_schedule",
                "plateau needs --lr-decay < 1, the factor applied at each plateau",
            )
        if self.lr_schedule == "cosine" and not (
            self.max_iters or self.max_epochs or self.time_limit
        ):
            raise ConfigError(
                "--lr-schedule cosine decays to the planned end of the run: it "
                "needs --max-iters, --max-epochs or --time-limit"
            )
        watches = self.patience > 0 or self.lr_schedule == "plateau"
        if watches and (self.eval_every == 0 or self.val_fraction == 0):
            what = "--patience" if self.patience > 0 else "--lr-schedule plateau"
            raise ConfigError(
                f"{what} watches the validation loss: it needs --eval-every > 0 "
                "and --val-fraction > 0"
            )
        _require(
            self.unknown_chars in UNKNOWN_CHARS, "unknown_chars", f"must be one of {UNKNOWN_CHARS}"
        )
        if self.plot and not self.checkpoint:
            raise ConfigError("--plot writes the curves beside the checkpoint: give a checkpoint")


def _require(ok: bool, name: str, what: str) -> None:
    if not ok:
        raise ConfigError(f"{flag(name)} {what}")


def flag(name: str) -> str:
    """The CLI flag of a TrainConfig field: 'hidden_size' -> '--hidden-size'."""
    return "--" + name.replace("_", "-")


# Options that define the run; a resumed run must keep them, or it would not be a continuation.
FROZEN_ON_RESUME = (
    "batch_size",
    "seq_length",
    "val_fraction",
    "hidden_size",
    "cell",
    "num_layers",
    "embedding_size",
    "init",
    "dtype",
    "seed",
    "optimizer",
)
# Options that the checkpoint's model decides, on resume and with --init-from, and what a
# model.config() without them means (a model from before embeddings and init schemes).
MODEL_OPTIONS = ("hidden_size", "dtype", "cell", "num_layers", "embedding_size", "init")
MODEL_CONFIG_MISSING = {"embedding_size": 0, "init": "uniform"}
# Options of one session only: a resumed run does not inherit them from the checkpoint.
SESSION_ONLY = {"overwrite": False, "quiet": False}
# What a stored train_config without these options meant (whatever their defaults now are).
BEFORE_OPTION = {
    "lr_schedule": "constant",
    "warmup_iters": 0,
    "patience": 0,
    **MODEL_CONFIG_MISSING,
}


def field_names() -> set[str]:
    return {f.name for f in dataclasses.fields(TrainConfig)}


def check_option_names(options: dict[str, Any]) -> None:
    """ConfigError for a name that is not an option, with the closest ones as suggestions."""
    known = field_names() | set(OPTION_ALIASES)
    for name in sorted(set(options) - known):
        close = difflib.get_close_matches(name, sorted(known), n=2, cutoff=0.6)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(f"unknown training option {name!r}{hint}")


def canonical_options(options: dict[str, Any]) -> dict[str, Any]:
    """options with former names (OPTION_ALIASES) replaced by the current ones."""
    for old, new in OPTION_ALIASES.items():
        if old in options and new in options:
            raise ConfigError(f"give {new}= only once (also given as {old}=)")
    return {OPTION_ALIASES.get(name, name): value for name, value in options.items()}


def checkpoint_to_load(options: dict[str, Any]) -> str | None:
    """The checkpoint a run starts from: options['resume'] or options['init_from'], not both."""
    if options.get("resume") and options.get("init_from"):
        raise ConfigError(
            "--resume and --init-from exclude each other: --resume continues "
            "a run, --init-from starts a new one from its weights"
        )
    return options.get("resume") or options.get("init_from") or None


def resolve_config(options: dict[str, Any], loaded: Checkpoint | None = None) -> TrainConfig:
    """The run's TrainConfig from the options given and, if any, the checkpoint they name.

    loaded is the checkpoint of options['resume'] or options['init_from'] (None for a fresh
    run). Raises ConfigError for contradictions and invalid values.
    """
    check_option_names(options)
    options = canonical_options(options)
    checkpoint_to_load(options)
    for name in ("corpus", "log"):  # a resume may run from another directory
        value = options.get(name)
        if value:
            options[name] = (
                os.path.abspath(value)
                if isinstance(value, str)
                else [os.path.abspath(v) for v in value]
            )  # a corpus list
    if options.get("resume"):
        if loaded is None:
            raise ValueError("resolve_config: resume needs the loaded checkpoint")
        cfg = _resumed_config(options, loaded)
    else:
        if not any(k in options for k in DURATION_OPTIONS):
            options = {**options, "time_limit": DEFAULT_TIME_LIMIT}
        cfg = TrainConfig(**options)
        if options.get("init_from"):
            if loaded is None:
                raise ValueError("resolve_config: init_from needs the loaded checkpoint")
            _adopt_model(cfg, loaded, options)
    _implied_schedule(cfg, options)
    if cfg.plot and not cfg.log and cfg.checkpoint:
        cfg.log = os.path.abspath(default_log_path(cfg.checkpoint))
    cfg.validate()
    return cfg


def default_log_path(checkpoint: str) -> str:
    """The log that --plot keeps when --log is not given: 'run.npz' -> 'run.jsonl'."""
    return os.path.splitext(checkpoint)[0] + ".jsonl"


def budget_given(options: dict[str, Any]) -> list[str]:
    """The duration options given: on resume, a new budget counted from the resume point."""
    return [name for name in DURATION_OPTIONS if name in options]


def _resumed_config(options: dict[str, Any], loaded: Checkpoint) -> TrainConfig:
    """The checkpoint's config + options; FROZEN_ON_RESUME options may not change, and
    checkpoints go on being written to the resumed file unless --checkpoint says otherwise."""
    saved = canonical_options(loaded.header.get("train_config", {}))
    known = field_names()
    base = TrainConfig(**{**BEFORE_OPTION, **{k: v for k, v in saved.items() if k in known}})
    for name, value in model_options(loaded).items():
        setattr(base, name, value)
    for name in FROZEN_ON_RESUME:
        if name in options and options[name] != getattr(base, name):
            raise ConfigError(
                f"{flag(name)} cannot change on --resume (the checkpoint has "
                f"{getattr(base, name)!r}); use --init-from to start a new run from its weights"
            )
    if budget_given(options):  # the stored limits were the old run's: the new budget rules
        for name in DURATION_OPTIONS:
            setattr(base, name, 0)
    options = {**SESSION_ONLY, **options}  # given again each session, never inherited
    options.setdefault("checkpoint", options["resume"])  # keep writing the file resumed
    return dataclasses.replace(base, init_from=None, **options)


def model_options(loaded: Checkpoint) -> dict[str, Any]:
    """The MODEL_OPTIONS of a checkpoint's model, as TrainConfig values."""
    mcfg = {**MODEL_CONFIG_MISSING, **loaded.model.config()}
    return {name: mcfg[name] for name in MODEL_OPTIONS}


def _adopt_model(cfg: TrainConfig, loaded: Checkpoint, options: dict[str, Any]) -> None:
    """--init-from keeps the checkpoint's architecture; a contradicting flag is an error."""
    for name, saved in model_options(loaded).items():
        if name in options and options[name] != saved:
            raise ConfigError(
                f"{flag(name)} {options[name]} contradicts "
                f"--init-from {cfg.init_from}, whose model has {saved}"
            )
        setattr(cfg, name, saved)


def _implied_schedule(cfg: TrainConfig, options: dict[str, Any]) -> None:
    """--lr-decay < 1 given without --lr-schedule means the step schedule (as does a stored
    run from before schedules, whose lr_schedule reads as constant); without either, a run
    with no planned end (every limit 0) has nothing for the default cosine to decay to and
    keeps a constant rate."""
    if "lr_schedule" in options:
        return
    if cfg.lr_decay < 1:
        if "lr_decay" in options or cfg.lr_schedule == "constant":
            cfg.lr_schedule = "step"
        return
    if cfg.lr_schedule == "cosine" and not (cfg.max_iters or cfg.max_epochs or cfg.time_limit):
        cfg.lr_schedule = "constant"
