"""Flags and exit codes of the command-line tools: flags of other char-level trainers get a "did
you mean", prefixes are not taken as flags, usage errors exit 2 and failures 1 (the rule stated in
every --help), `python -m fastrnn TOOL` is the same entry as `fastrnn-TOOL`, `--version`."""

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fastrnn
from fastrnn import checkpoint as ckpt
from fastrnn.cli import TOOLS, info_main, main, sample_main, train_main
from fastrnn.data import default_corpus
from fastrnn.train import train

TEXT = default_corpus()[:6000]
FAST = ["--hidden-size", "16", "--batch-size", "4", "--seq-length", "16", "--sample-every", "0"]
SRC = str(Path(fastrnn.__file__).resolve().parents[1])


def call(entry, args, capsys):
    """(exit status, stdout, stderr) of an entry point."""
    try:
        status = entry([str(a) for a in args])
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def python_m(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.run(
        [sys.executable, "-m", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


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
        max_iters=10,
    )
    return path


def has_flag(make_parser, flag: str) -> bool:
    return any(flag in a.option_strings for a in make_parser()._actions)


# ---------------------------------------------------------------- flags of other tools

TRAIN_FLAGS = [
    ("--epochs", "--max-epochs"),
    ("--rnn-size", "--hidden-size"),
    ("--rnn_size", "--hidden-size"),
    ("-rnn_size", "--hidden-size"),
    ("--lr", "--learning-rate"),
    ("--max_iters", "--max-iters"),
    ("--learning_rate", "--learning-rate"),
    ("--num_layers", "--num-layers"),
    ("--batch_size", "--batch-size"),
    ("--seq_length", "--seq-length"),
    ("-seq_length", "--seq-length"),
    ("--init_from", "--init-from"),
    ("--block_size", "--seq-length"),
    ("--n_layer", "--num-layers"),
    ("--model_type", "--model"),
    ("--hidden", "--hidden-size"),
    ("--max-epoch", "--max-epochs"),
    ("--epochs=3", "--max-epochs"),
]


@pytest.mark.parametrize("given,meant", TRAIN_FLAGS)
def test_train_suggests_its_flag(corpus, tmp_path, capsys, given, meant):
    status, _, err = call(
        train_main, [corpus, given, "3", "--checkpoint", tmp_path / "r.npz"], capsys
    )
    assert status == 2 and len(err.strip().splitlines()) == 1
    flag = given.split("=")[0]
    assert f"fastrnn-train: error: unknown option {flag}; did you mean {meant}?" in err


def test_a_flag_of_an_embedding_model(corpus, capsys):
    status, _, err = call(train_main, [corpus, "-wordvec_size", "64"], capsys)
    assert status == 2 and "unknown option -wordvec_size" in err
    if has_flag(TOOLS["train"][0], "--embedding-size"):
        assert "did you mean --embedding-size?" in err


@pytest.mark.parametrize(
    "given,meant",
    [
        ("--temp", "did you mean --temperature?"),
        ("-temperature", "did you mean --temperature?"),
        ("--top_k", "did you mean --top-k?"),
        ("-primetext", "did you mean --prime?"),
        ("--start", "did you mean --prime?"),
        ("--max_new_tokens", "did you mean --length?"),
        ("-length", "did you mean --length?"),
        ("-checkpoint", "did you mean the CHECKPOINT argument"),
        ("-gpu", "fastrnn runs on the CPU"),
    ],
)
def test_sample_suggests_its_flag(trained, capsys, given, meant):
    status, out, err = call(sample_main, [trained, given, "1"], capsys)
    assert status == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert f"fastrnn-sample: error: unknown option {given}; {meant}" in err


def test_a_gpu_flag_is_told_about_the_cpu(corpus, capsys):
    status, _, err = call(train_main, [corpus, "--device", "cuda"], capsys)
    assert status == 2 and "fastrnn runs on the CPU (--threads sets its BLAS threads)" in err


def test_a_flag_of_the_other_tool(corpus, capsys):
    status, _, err = call(train_main, [corpus, "--temperature", "0.5"], capsys)
    assert status == 2 and "--temperature is an option of fastrnn-sample" in err


def test_a_flag_nobody_has(corpus, capsys):
    status, _, err = call(train_main, [corpus, "--frobnicate", "2"], capsys)
    assert status == 2 and "unknown option --frobnicate; see --help" in err


def test_prefixes_are_not_flags(trained, corpus, capsys, tmp_path):
    for make_parser, _, _ in TOOLS.values():
        assert make_parser().allow_abbrev is False
    assert {"train", "sample", "info", "eval", "plot", "inspect", "export"} <= set(TOOLS)
    status, out, err = call(sample_main, [trained, "--temp", "0.5", "--length", "5"], capsys)
    assert status == 2 and out == ""
    status, _, err = call(
        train_main, [corpus, *FAST, "--max-it", "2", "--checkpoint", tmp_path / "r.npz"], capsys
    )
    assert status == 2 and "did you mean --max-iters?" in err
    assert not (tmp_path / "r.npz").exists()


# ---------------------------------------------------------------- exit codes


def test_usage_errors_exit_2(trained, corpus, tmp_path, capsys):
    V = ckpt.load_checkpoint(trained).vocab.size
    cases = [
        (sample_main, [trained, "--top-k", V + 1]),
        (sample_main, [trained, "--prime", "Ж"]),
        (sample_main, [trained, "--temperature", "0"]),
        (train_main, [corpus, "--resume", trained, "--init-from", trained]),
        (train_main, [corpus, "--resume", trained, "--batch-size", 8]),
        (
            train_main,
            [
                corpus,
                "--init-from",
                trained,
                "--hidden-size",
                17,
                "--checkpoint",
                tmp_path / "r.npz",
            ],
        ),
        (train_main, [corpus, "--batch-size", "-1"]),
        (info_main, [trained, "--jsn"]),
    ]
    for entry, args in cases:
        status, _, err = call(entry, args, capsys)
        assert (status, len(err.strip().splitlines())) == (2, 1), (args, err)


def test_failures_while_running_exit_1(trained, corpus, tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(trained.read_bytes()[:500])
    cases = [
        (train_main, [tmp_path / "missing.txt", "--checkpoint", tmp_path / "r.npz"]),
        (train_main, [corpus, "--resume", bad]),
        (sample_main, [bad]),
        (info_main, [bad]),
        (sample_main, [trained, "--length", 3, "-o", tmp_path / "no" / "dir" / "x.txt"]),
    ]
    for entry, args in cases:
        status, _, err = call(entry, args, capsys)
        assert (status, len(err.strip().splitlines())) == (1, 1), (args, err)

    status, _, err = call(
        train_main,
        [
            corpus,
            *FAST,
            "--max-iters",
            5,
            "--log",
            tmp_path / "corpus.txt" / "log.jsonl",
            "--checkpoint",
            tmp_path / "l.npz",
        ],
        capsys,
    )
    assert status == 1 and "cannot write the log" in err

    real = fastrnn.CharRNN.loss_and_grads

    def diverge(self, *args, **kwargs):
        loss, grads, h = real(self, *args, **kwargs)
        return float("nan"), grads, h

    monkeypatch.setattr(fastrnn.CharRNN, "loss_and_grads", diverge)
    status, _, err = call(
        train_main, [corpus, *FAST, "--max-iters", 5, "--checkpoint", tmp_path / "d.npz"], capsys
    )
    assert status == 1 and "became nan" in err


@pytest.mark.parametrize("drop", ["hidden", "optim.m.Whh"])
def test_a_damaged_training_checkpoint_exits_1(trained, corpus, tmp_path, capsys, drop):
    arrays = ckpt.read_arrays(trained)
    del arrays[drop]
    arrays["checksum"] = ckpt.checksum(arrays)
    damaged = tmp_path / "damaged.npz"
    ckpt.write_atomically(str(damaged), arrays)
    status, _, err = call(train_main, [corpus, "--resume", damaged, "--max-iters", 20], capsys)
    assert status == 1 and str(damaged) in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_help_states_the_exit_rule(tool, capsys):
    status, out, _ = call(TOOLS[tool][1], ["--help"], capsys)
    assert status == 0
    text = " ".join(out.split())
    for words in (
        "2 a usage error",
        "1 a failure while running",
        "130 after Ctrl-C",
        "143 after SIGTERM",
    ):
        assert words in text, words


# ---------------------------------------------------------------- python -m fastrnn, --version


@pytest.mark.parametrize("module", ["fastrnn", "fastrnn.cli"])
def test_python_m_without_a_tool_prints_usage_and_exits_2(module):
    proc = python_m(module)
    assert proc.returncode == 2 and proc.stdout == ""
    for tool in TOOLS:
        assert f"  {tool} " in proc.stderr
    assert "no tool given" in proc.stderr and "Traceback" not in proc.stderr


def test_python_m_runs_the_tools(trained, tmp_path):
    proc = python_m("fastrnn", "sample", trained, "--length", 20, "--seed", 3)
    assert proc.returncode == 0, proc.stderr
    direct = python_m("fastrnn.cli", "sample", trained, "--length", 20, "--seed", 3)
    assert direct.stdout == proc.stdout and len(proc.stdout) == 21
    proc = python_m("fastrnn", "info", trained)
    assert proc.returncode == 0 and "iteration 10" in proc.stdout
    proc = python_m("fastrnn", "train", "--epochs", 1)
    assert proc.returncode == 2 and "did you mean --max-epochs?" in proc.stderr
    proc = python_m("fastrnn", "nonsense")
    assert proc.returncode == 2 and "unknown tool 'nonsense'" in proc.stderr


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_version(tool, capsys):
    status, out, _ = call(TOOLS[tool][1], ["--version"], capsys)
    assert status == 0 and fastrnn.__version__ in out and f"fastrnn-{tool}" in out
    assert call(main, ["--version"], capsys)[1].strip() == f"fastrnn {fastrnn.__version__}"
