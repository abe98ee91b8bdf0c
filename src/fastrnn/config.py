"""Training options: ``TrainConfig``, its validation, and how options meet a checkpoint.

A fresh run is the defaults plus the options given. A resumed run (``--resume``) is the
checkpoint's configuration plus the options given, which may not change what defines the run
(FROZEN_ON_RESUME). A fine-tuning run (``--init-from``) takes its architecture from the
checkpoint's model (MODEL_OPTIONS); a flag that contradicts it is an error. ``resolve_config``
is the one function that applies these rules.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from .checkpoint import Checkpoint
from .errors import ConfigError
from .model import BACKENDS, CELLS
from .optim import OPTIMIZERS

# A fresh run given no limit at all stops after this many epochs, so that a bare
# `fastrnn-train` ends by itself (about 40 s on the default corpus on 2 cores).
DEFAULT_MAX_EPOCHS = 50.0
DURATION_OPTIONS = ("max_iters", "max_epochs", "time_limit")

# Former option names still accepted (from the Python API and stored checkpoint headers).
OPTION_ALIASES = {"model": "cell"}


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
    cell: str = "rnn"                  # rnn, lstm or gru (CLI: --model or --cell)
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
        _require(self.cell in CELLS, "cell", f"must be one of {CELLS}")
        _require(0 <= self.dropout < 1, "dropout", "must be in [0, 1)")
        _require(self.backend in BACKENDS, "backend", f"must be one of {BACKENDS}")


def _require(ok: bool, name: str, what: str) -> None:
    if not ok:
        raise ConfigError(f"{flag(name)} {what}")


def flag(name: str) -> str:
    """The CLI flag of a TrainConfig field: 'hidden_size' -> '--hidden-size'."""
    return "--" + name.replace("_", "-")


# Options that define the run; a resumed run must keep them, or it would not be a continuation.
FROZEN_ON_RESUME = ("batch_size", "seq_length", "val_fraction", "hidden_size", "cell",
                    "num_layers", "dtype", "seed", "optimizer")
# Options that --init-from takes from the checkpoint's model: field -> model.config() key.
MODEL_OPTIONS = {"hidden_size": "hidden_size", "dtype": "dtype", "cell": "cell",
                 "num_layers": "num_layers"}


def field_names() -> set[str]:
    return {f.name for f in dataclasses.fields(TrainConfig)}


def canonical_options(options: dict[str, Any]) -> dict[str, Any]:
    """options with former names (OPTION_ALIASES) replaced by the current ones."""
    for old, new in OPTION_ALIASES.items():
        if old in options and new in options:
            raise ConfigError(f"give {new}= only once (also given as {old}=)")
    return {OPTION_ALIASES.get(name, name): value for name, value in options.items()}


def checkpoint_to_load(options: dict[str, Any]) -> str | None:
    """The checkpoint a run starts from: options['resume'] or options['init_from'], not both."""
    if options.get("resume") and options.get("init_from"):
        raise ConfigError("--resume and --init-from exclude each other: --resume continues "
                          "a run, --init-from starts a new one from its weights")
    return options.get("resume") or options.get("init_from") or None


def resolve_config(options: dict[str, Any], loaded: Checkpoint | None = None) -> TrainConfig:
    """The run's TrainConfig from the options given and, if any, the checkpoint they name.

    loaded is the checkpoint of options['resume'] or options['init_from'] (None for a fresh
    run). Raises ConfigError for contradictions and invalid values.
    """
    options = canonical_options(options)
    checkpoint_to_load(options)
    if options.get("resume"):
        if loaded is None:
            raise ValueError("resolve_config: resume needs the loaded checkpoint")
        cfg = _resumed_config(options, loaded)
    else:
        if not any(k in options for k in DURATION_OPTIONS):
            options = {**options, "max_epochs": DEFAULT_MAX_EPOCHS}
        cfg = TrainConfig(**options)
        if options.get("init_from"):
            if loaded is None:
                raise ValueError("resolve_config: init_from needs the loaded checkpoint")
            _adopt_model(cfg, loaded, options)
    cfg.validate()
    return cfg


def _resumed_config(options: dict[str, Any], loaded: Checkpoint) -> TrainConfig:
    """The checkpoint's config + options; FROZEN_ON_RESUME options may not change, and
    checkpoints go on being written to the resumed file unless --checkpoint says otherwise."""
    saved = canonical_options(loaded.header.get("train_config", {}))
    known = field_names()
    base = TrainConfig(**{k: v for k, v in saved.items() if k in known})
    for name in FROZEN_ON_RESUME:
        if name in options and options[name] != getattr(base, name):
            raise ConfigError(
                f"{flag(name)} cannot change on --resume (the checkpoint has "
                f"{getattr(base, name)!r}); use --init-from to start a new run from its weights")
    options = {**options}
    options.setdefault("checkpoint", options["resume"])  # keep writing the file resumed
    return dataclasses.replace(base, init_from=None, **options)


def _adopt_model(cfg: TrainConfig, loaded: Checkpoint, options: dict[str, Any]) -> None:
    """--init-from keeps the checkpoint's architecture; a contradicting flag is an error."""
    mcfg = loaded.model.config()
    for name, key in MODEL_OPTIONS.items():
        saved = mcfg[key]
        if name in options and options[name] != saved:
            raise ConfigError(f"{flag(name)} {options[name]} contradicts "
                              f"--init-from {cfg.init_from}, whose model has {saved}")
        setattr(cfg, name, saved)
