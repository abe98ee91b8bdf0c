"""fastrnn-sample writes its text as it is generated: a flush at every line end, each one before
the generation has finished, whatever the output (terminal or pipe)."""

import importlib
import io

import numpy as np

from _tools import random_model, write_checkpoint
from fastrnn import Vocabulary
from fastrnn.cli import sample_main

SAMPLE = importlib.import_module("fastrnn.sample")  # the module (fastrnn.sample is the function)


class FlushRecorder(io.StringIO):
    """A stdout that records, at each flush, how much text it holds and how many characters
    the generator had produced by then."""

    def __init__(self, produced):
        super().__init__()
        self.produced = produced
        self.flushes: list[tuple[int, int]] = []

    def isatty(self):
        return False  # a pipe

    def flush(self):
        self.flushes.append((len(self.getvalue()), self.produced[0]))


def test_output_is_flushed_line_by_line_while_generating(tmp_path, monkeypatch):
    vocab = Vocabulary.from_text("ab cd\nef gh\n")
    model = random_model(vocab, "rnn", hidden=6, scale=1.0)
    model.params["by"][vocab.chars.index("\n")] += 2.0  # many short lines
    ckpt = write_checkpoint(tmp_path / "m.npz", model, vocab)
    produced = [0]
    real_iter_sample = SAMPLE.iter_sample

    def counting_iter_sample(*args, **kwargs):
        for ch in real_iter_sample(*args, **kwargs):
            produced[0] += 1
            yield ch

    monkeypatch.setattr(SAMPLE, "iter_sample", counting_iter_sample)
    out = FlushRecorder(produced)
    monkeypatch.setattr("sys.stdout", out)
    assert sample_main([ckpt, "--length", "400", "--seed", "1"]) == 0
    text = out.getvalue()
    lines = text.count("\n")
    assert lines > 20
    assert len(out.flushes) == lines  # one flush per line end, the last after the final newline
    sizes = [size for size, _ in out.flushes]
    assert sizes == [i + 1 for i, ch in enumerate(text) if ch == "\n"]  # each right at a line end
    assert out.flushes[0][1] < 400  # the first line left before the generation finished
    assert np.all(np.diff([n for _, n in out.flushes]) >= 0)
