"""config.py: TrainConfig, how options meet a checkpoint, the former option name 'model'."""

import io

import numpy as np
import pytest

import fastrnn
from _checkpoints import rewrite_header
from fastrnn import checkpoint as ckpt
from fastrnn.cli import train_options, train_parser
from fastrnn.config import (
    DEFAULT_TIME_LIMIT,
    FROZEN_ON_RESUME,
    TrainConfig,
    canonical_options,
    resolve_config,
)
from fastrnn.data import default_corpus
from fastrnn.errors import ConfigError

TEXT = default_corpus()[:2500]
SMALL = dict(
    hidden_size=16, batch_size=4, seq_length=16, sample_every=0, eval_every=7, dtype="float64"
)


def run(tmp_path, name, **options):
    return fastrnn.train(
        text=TEXT, out=io.StringIO(), **{**SMALL, "checkpoint": str(tmp_path / name), **options}
    )


def test_fresh_config_defaults_and_validation():
    assert resolve_config({}).time_limit == DEFAULT_TIME_LIMIT
    assert resolve_config({"time_limit": 3.0}).max_epochs == 0
    with pytest.raises(ConfigError, match="--hidden-size must be a positive integer"):
        resolve_config({"hidden_size": 0})
    with pytest.raises(ConfigError, match="--cell must be one of"):
        resolve_config({"cell": "transformer"})


def test_model_is_a_former_name_of_cell():
    assert canonical_options({"model": "gru", "hidden_size": 3}) == {
        "cell": "gru",
        "hidden_size": 3,
    }
    assert resolve_config({"model": "lstm"}).cell == "lstm"
    with pytest.raises(ConfigError, match="only once"):
        canonical_options({"model": "gru", "cell": "lstm"})


@pytest.mark.parametrize("flag", ["--model", "--cell"])
def test_cli_flags_model_and_cell(flag):
    args = train_parser().parse_args(["x.txt", flag, "lstm"])
    assert train_options(args)["cell"] == "lstm"


@pytest.mark.slow
def test_train_accepts_model_as_an_alias(tmp_path):
    result = run(tmp_path, "a.npz", model="gru", max_iters=2)
    assert result.model.cell == "gru"
    saved = ckpt.load_checkpoint(tmp_path / "a.npz").header["train_config"]
    assert saved["cell"] == "gru" and "model" not in saved


@pytest.mark.slow
def test_checkpoint_with_model_in_its_train_config_resumes_exactly(tmp_path):
    before = dict(cell="lstm", embedding_size=0, init="uniform", lr_schedule="constant")
    straight = run(tmp_path, "straight.npz", max_iters=30, **before)
    run(tmp_path, "old.npz", max_iters=15, **before)

    def as_older_version(header):
        config = header["train_config"]
        config["model"] = config.pop("cell")
        for name in (
            "embedding_size",
            "init",
            "lr_schedule",
            "warmup_iters",
            "patience",
            "plateau_patience",
            "unknown_chars",
            "overwrite",
            "plot",
        ):
            del config[name]
        for name in ("loss_watch", "train_seconds", "best_iteration"):
            del header[name]
        for name in ("embedding_size", "init", "init_spec"):
            del header["model"][name]

    rewrite_header(tmp_path / "old.npz", as_older_version)
    assert "model" in ckpt.load_checkpoint(tmp_path / "old.npz").header["train_config"]
    resumed = fastrnn.train(
        text=TEXT, resume=str(tmp_path / "old.npz"), max_iters=15, out=io.StringIO()
    )
    assert resumed.iterations == straight.iterations == 30
    assert resumed.model.cell == "lstm"
    for k, v in straight.model.params.items():
        assert np.array_equal(v, resumed.model.params[k]), k
    with pytest.raises(ConfigError, match="--cell cannot change on --resume"):
        fastrnn.train(text=TEXT, resume=str(tmp_path / "old.npz"), model="rnn", out=io.StringIO())


@pytest.mark.slow
@pytest.mark.parametrize("name", FROZEN_ON_RESUME)
def test_every_frozen_option_is_refused_on_resume(tmp_path, name):
    run(tmp_path, "r.npz", max_iters=1)
    loaded = ckpt.load_checkpoint(tmp_path / "r.npz")
    current = getattr(resolve_config({"resume": str(tmp_path / "r.npz")}, loaded), name)
    if isinstance(current, str):
        other = {
            "rnn": "gru",
            "lstm": "gru",
            "float64": "float32",
            "adam": "sgd",
            "uniform": "default",
            "default": "uniform",
        }[current]
    else:
        other = current + 1 if isinstance(current, int) else current / 2 + 0.01
    with pytest.raises(ConfigError, match="cannot change on --resume"):
        resolve_config({"resume": str(tmp_path / "r.npz"), name: other}, loaded)
    same = resolve_config({"resume": str(tmp_path / "r.npz"), name: current}, loaded)
    assert getattr(same, name) == current


@pytest.mark.slow
def test_init_from_takes_the_architecture_of_the_checkpoint(tmp_path):
    run(tmp_path, "base.npz", cell="gru", num_layers=2, max_iters=1)
    loaded = ckpt.load_checkpoint(tmp_path / "base.npz")
    cfg = resolve_config({"init_from": str(tmp_path / "base.npz")}, loaded)
    assert (cfg.cell, cfg.num_layers, cfg.hidden_size, cfg.dtype) == ("gru", 2, 16, "float64")
    with pytest.raises(ConfigError, match="--cell lstm contradicts --init-from"):
        resolve_config({"init_from": str(tmp_path / "base.npz"), "model": "lstm"}, loaded)


def test_train_config_fields_are_the_cli_options():
    """Every TrainConfig field but the corpus (TEXT_FILE) is a flag of fastrnn-train."""
    dests = {a.dest for a in train_parser()._actions}
    fields = set(TrainConfig.__dataclass_fields__) - {"corpus"}
    assert fields <= dests, fields - dests


@pytest.mark.slow
def test_embedding_and_init_options(tmp_path):
    from fastrnn.config import INIT_SCHEMES

    assert "uniform" in INIT_SCHEMES and resolve_config({}).init in INIT_SCHEMES
    with pytest.raises(ConfigError, match="--init must be one of"):
        resolve_config({"init": "xavier"})
    with pytest.raises(ConfigError, match="--embedding-size must be an integer >= 0"):
        resolve_config({"embedding_size": -1})
    result = run(tmp_path, "e.npz", embedding_size=8, init="default", max_iters=3)
    assert result.model.embedding_size == 8 and "Wemb" in result.model.params
    loaded = ckpt.load_checkpoint(tmp_path / "e.npz")
    assert loaded.header["train_config"]["embedding_size"] == 8
    assert loaded.header["train_config"]["init"] == "default"
    for name, other in (("embedding_size", 4), ("init", "uniform")):
        with pytest.raises(ConfigError, match="cannot change on --resume"):
            fastrnn.train(
                text=TEXT, resume=str(tmp_path / "e.npz"), out=io.StringIO(), **{name: other}
            )
    tuned = run(tmp_path, "t.npz", init_from=str(tmp_path / "e.npz"), max_iters=2)
    assert tuned.model.embedding_size == 8


@pytest.mark.slow
def test_a_run_with_an_embedding_resumes_exactly(tmp_path):
    # constant rate: with a budget-planned schedule a 10-iteration run ends its own schedule
    opts = dict(embedding_size=6, init="default", lr_schedule="constant")
    straight = run(tmp_path, "straight.npz", max_iters=20, **opts)
    run(tmp_path, "split.npz", max_iters=10, **opts)
    resumed = fastrnn.train(
        text=TEXT, resume=str(tmp_path / "split.npz"), max_iters=10, out=io.StringIO()
    )
    assert resumed.model.embedding_size == 6 and resumed.model.init == "default"
    for k, v in straight.model.params.items():
        assert np.array_equal(v, resumed.model.params[k]), k
