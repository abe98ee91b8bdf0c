"""fastrnn-info and checkpoint.describe: what a checkpoint holds, for people and for machines,
including checkpoints whose header lacks newer keys; and a file that is not a checkpoint is
called that, never answered with numpy's advice to load it unsafely."""

import io
import json
import math
from importlib.metadata import entry_points

import numpy as np
import pytest

import fastrnn
from fastrnn import checkpoint as ckpt
from fastrnn.cli import info_main, sample_main
from fastrnn.data import Vocabulary, default_corpus
from fastrnn.train import train

TEXT = default_corpus()[:6000] + "\t\x01"


def call(entry, args, capsys):
    try:
        status = entry([str(a) for a in args])
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = tmp_path_factory.mktemp("run") / "run.npz"
    train(
        text=TEXT,
        out=io.StringIO(),
        checkpoint=str(path),
        hidden_size=16,
        batch_size=4,
        seq_length=16,
        sample_every=0,
        eval_every=5,
        max_iters=12,
        cell="gru",
        learning_rate=3e-3,
        num_layers=1,
        lr_schedule="constant",
    )
    return path


def test_info_as_json_matches_the_checkpoint(trained, capsys):
    status, out, err = call(info_main, [trained, "--json"], capsys)
    assert status == 0 and err == ""
    info = json.loads(out)
    loaded = ckpt.load_checkpoint(trained)
    head, model = loaded.header, loaded.model
    assert info["model"]["cell"] == "gru" and info["model"]["hidden_size"] == 16
    assert info["model"]["num_layers"] == 1 and info["model"]["dtype"] == "float32"
    assert info["model"]["parameters"] == model.num_params
    assert info["vocabulary"]["size"] == loaded.vocab.size
    assert info["vocabulary"]["sample"] == "".join(loaded.vocab.chars[: ckpt.VOCAB_SAMPLE])
    assert info["corpus"]["chars"] == len(TEXT) == head["corpus_chars"]
    assert info["corpus"]["sha256"] == head["corpus_sha256"]
    assert info["iteration"] == 12 and info["optimizer"] == "adam"
    assert info["learning_rate"] == 3e-3
    best = info["best_val_loss"]
    assert best["nats"] == head["best_val_loss"]
    assert math.isclose(best["bits"], best["nats"] / math.log(2))
    assert info["val_loss"]["nats"] == head["val_loss"]


def test_info_for_people(trained, capsys):
    status, out, _ = call(info_main, [trained], capsys)
    assert status == 0
    loaded = ckpt.load_checkpoint(trained)
    sha = loaded.header["corpus_sha256"][:16]
    best = loaded.header["best_val_loss"]
    for words in (
        "GRU",
        "hidden 16",
        f"{loaded.model.num_params:,} parameters",
        "float32",
        f"vocabulary  {loaded.vocab.size} characters",
        f"sha256 {sha}",
        "iteration 12",
        f"{best:.4f} nats/char = {best / math.log(2):.4f} bits/char",
        "adam, lr 0.003",
    ):
        assert words in out, words
    vocab_line = next(line for line in out.splitlines() if line.startswith("vocabulary"))
    assert "\\t" in vocab_line and "\\n" in vocab_line and "\\x01" in vocab_line
    assert "\t" not in vocab_line and "\x01" not in vocab_line and vocab_line.endswith(" ...")


def test_info_on_a_checkpoint_with_an_old_header(tmp_path, capsys):
    path = tmp_path / "old.npz"
    vocab = Vocabulary.from_text("ab\n\u3000")
    ckpt.save_checkpoint(path, fastrnn.CharRNN(4, 5), vocab, {})  # no training keys at all
    status, out, _ = call(info_main, [path], capsys)
    assert status == 0
    assert "iteration n/a" in out and "best val    n/a" in out and "optimizer   n/a" in out
    assert "corpus      n/a" in out
    assert 'vocabulary  4 characters: "\\nab\\u3000"\n' in out
    status, out, _ = call(info_main, [path, "--json"], capsys)
    info = json.loads(out)
    assert info["iteration"] is None and info["best_val_loss"] is None
    assert info["model"]["parameters"] == fastrnn.CharRNN(4, 5).num_params


def test_fastrnn_info_is_installed():
    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts.get("fastrnn-info") == "fastrnn.cli:info_main"


# ---------------------------------------------------------------- not a checkpoint


def write(path, kind):
    if kind == "text":
        path.write_text("some text\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "npy":
        with open(path, "wb") as f:
            np.save(f, np.ones(3))
    elif kind == "pickled":
        with open(path, "wb") as f:
            np.savez(f, a=np.array([{"x": 1}], dtype=object))
    elif kind == "foreign":
        with open(path, "wb") as f:
            np.savez(f, weights=np.ones(3))


@pytest.mark.parametrize("kind", ["text", "empty", "npy", "pickled", "foreign"])
@pytest.mark.parametrize(
    "entry,prog", [(sample_main, "fastrnn-sample"), (info_main, "fastrnn-info")]
)
def test_a_file_that_is_not_a_checkpoint_is_called_that(tmp_path, capsys, kind, entry, prog):
    path = tmp_path / "some.txt"
    write(path, kind)
    status, out, err = call(entry, [path], capsys)
    assert status == 1 and out == ""
    assert err.startswith(f"{prog}: error: {path} is not a fastrnn checkpoint")
    assert "allow_pickle" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("keep", [0.9, 0.5, 0.1])
def test_a_truncated_checkpoint_is_called_that(trained, tmp_path, capsys, keep):
    path = tmp_path / "cut.npz"
    data = trained.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    status, _, err = call(sample_main, [path], capsys)
    assert status == 1 and "allow_pickle" not in err
    assert f"{path} is not a fastrnn checkpoint, or it is damaged" in err


@pytest.mark.parametrize("embedding,words", [(0, "one-hot input"), (5, "embedding 5")])
def test_info_names_the_input_layer(tmp_path, capsys, embedding, words):
    path = tmp_path / "e.npz"
    vocab = Vocabulary.from_text("abcd")
    model = fastrnn.CharRNN(4, 6, embedding_size=embedding)
    ckpt.save_checkpoint(path, model, vocab, {})
    status, out, _ = call(info_main, [path], capsys)
    assert status == 0 and f"hidden 6, {words}, {model.num_params:,} parameters" in out
    assert (
        json.loads(call(info_main, [path, "--json"], capsys)[1])["model"]["embedding_size"]
        == embedding
    )
