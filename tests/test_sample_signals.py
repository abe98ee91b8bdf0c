"""fastrnn-sample stops on SIGTERM as on Ctrl-C: the text streamed so far stays whole (valid
UTF-8, the start of the text an uninterrupted run gives), the status is 143, a -o file is
written whole or not at all, and the previous SIGTERM handler comes back."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import fastrnn
from _tools import random_model, write_checkpoint
from fastrnn import cli
from fastrnn.data import Vocabulary

SAMPLE = importlib.import_module("fastrnn.sample")  # the module (fastrnn.sample is the function)

# Characters of one to four UTF-8 bytes, so that a cut inside a character would show.
TEXT = "the cat é à ß Ж € 中文 😀 naïve\n" * 20
PRIME = "Ж€"
SEED = 3


@pytest.fixture
def checkpoint(tmp_path):
    vocab = Vocabulary.from_text(TEXT)
    path = write_checkpoint(tmp_path / "tiny.npz", random_model(vocab, scale=0.3), vocab)
    return path, vocab


def expected_text(path: str, length: int) -> str:
    """What an uninterrupted run with the same seed prints for `length` generated characters."""
    model, vocab = fastrnn.load_model(path)
    return PRIME + fastrnn.sample(model, vocab, length, PRIME, seed=SEED)


@pytest.mark.slow
def test_sigterm_keeps_the_text_streamed_so_far(checkpoint):
    path, _ = checkpoint
    env = {**os.environ, "PYTHONPATH": str(Path(fastrnn.__file__).resolve().parents[1])}
    command = [sys.executable, "-m", "fastrnn", "sample", path, "--prime", PRIME]
    command += ["--seed", str(SEED), "--length", str(10**9)]  # runs until stopped
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        first = os.read(proc.stdout.fileno(), 1)  # generation has started
        proc.send_signal(signal.SIGTERM)
        rest, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert first, err.decode(errors="replace")
    assert proc.returncode == 143, err.decode(errors="replace")
    assert b"Traceback" not in err
    text = (first + rest).decode("utf-8")  # strict: a cut character raises
    assert len(text) > len(PRIME)
    assert text == expected_text(path, len(text) - len(PRIME))


def stop_after(chars: int, then):
    """A replacement for fastrnn.sample.iter_sample that calls then() after `chars`
    characters (then goes on)."""
    real = SAMPLE.iter_sample

    def iter_sample(*args, **kwargs):
        for i, ch in enumerate(real(*args, **kwargs)):
            if i == chars:
                then()
            yield ch

    return iter_sample


def send_sigterm(previous):
    """SIGTERM to this process, once fastrnn-sample has put its own handler in place (without
    one, the signal would end the test run)."""
    assert signal.getsignal(signal.SIGTERM) is not previous, "no SIGTERM handler installed"
    os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_in_process_streams_whole_characters_and_restores_the_handler(
    checkpoint, monkeypatch, capfd
):
    path, _ = checkpoint
    previous = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(SAMPLE, "iter_sample", stop_after(50, lambda: send_sigterm(previous)))
    args = [path, "--prime", PRIME, "--seed", str(SEED), "--length", "100000"]
    assert cli.sample_main(args) == 143
    assert signal.getsignal(signal.SIGTERM) is previous
    out = capfd.readouterr().out
    assert len(out) >= len(PRIME) + 50 and len(out) < len(PRIME) + 100000
    assert out == expected_text(path, len(out) - len(PRIME))


def test_sigterm_during_generation_leaves_no_output_file(checkpoint, monkeypatch, tmp_path):
    path, _ = checkpoint
    previous = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(SAMPLE, "iter_sample", stop_after(50, lambda: send_sigterm(previous)))
    out = tmp_path / "out.txt"
    assert cli.sample_main([path, "--length", "1000", "-o", str(out)]) == 143
    assert not out.exists()
    assert signal.getsignal(signal.SIGTERM) is previous


@pytest.mark.parametrize("extra", [[], ["--num-samples", "3"], ["--beam", "2"]])
def test_sigterm_during_the_write_waits_for_a_whole_file(checkpoint, monkeypatch, tmp_path, extra):
    path, _ = checkpoint
    previous = signal.getsignal(signal.SIGTERM)
    real_write = cli._write_file
    written = []

    def write_file(name, text):
        send_sigterm(previous)
        real_write(name, text)
        written.append(text)

    monkeypatch.setattr(cli, "_write_file", write_file)
    out = tmp_path / "out.txt"
    args = [path, "--prime", PRIME, "--seed", str(SEED), "--length", "40", "-o", str(out)]
    assert cli.sample_main(args + extra) == 143
    assert written and out.read_text(encoding="utf-8") == written[0] + "\n"
    assert signal.getsignal(signal.SIGTERM) is previous


def test_ctrl_c_still_gives_130_and_restores_the_sigterm_handler(checkpoint, monkeypatch):
    path, _ = checkpoint
    previous = signal.getsignal(signal.SIGTERM)

    def interrupt():
        raise KeyboardInterrupt

    monkeypatch.setattr(SAMPLE, "iter_sample", stop_after(10, interrupt))
    assert cli.sample_main([path, "--length", "1000"]) == 130
    assert signal.getsignal(signal.SIGTERM) is previous


def test_sigterm_handler_is_only_installed_in_the_main_thread():
    import threading

    seen = []

    def run():
        with cli.SigtermRaises() as signals:
            seen.append(signals.installed)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == [False]
