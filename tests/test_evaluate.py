"""fastrnn.evaluate and fastrnn-eval: the loss over a whole text with the state carried through
B streams equals the loss of each stream read in one piece; unknown characters; the CLI."""

import json
import math

import numpy as np
import pytest

import fastrnn
from _tools import TEXT, random_model, write_checkpoint
from fastrnn import Vocabulary
from fastrnn.cli import eval_main
from fastrnn.data import validation_chunks
from fastrnn.evaluate import combine, eval_chunks

VOCAB = Vocabulary.from_text(TEXT)


def stream_bounds(n: int, B: int) -> list[tuple[int, int]]:
    """B streams of n // B characters, the last one running to the end of the text."""
    L = n // B
    return [(b * L, (b + 1) * L if b < B - 1 else n) for b in range(B)]


def loss_stream_by_stream(model, ids, B):
    """Each stream read in one chunk from a zero state: (mean nats/char, characters scored)."""
    total, count = 0.0, 0
    for a, b in stream_bounds(ids.size, B):
        x, y = ids[None, a : b - 1].astype(np.int32), ids[None, a + 1 : b].astype(np.int32)
        loss, _ = model.loss(x, y, model.initial_state(1))
        total += loss * y.size
        count += y.size
    return total / count, count


@pytest.mark.parametrize("cell,layers", [("rnn", 1), ("lstm", 2), ("gru", 1)])
@pytest.mark.parametrize("n,B,T", [(3000, 4, 50), (2999, 7, 33), (1001, 3, 1000), (500, 1, 7)])
def test_equals_each_stream_read_whole(cell, layers, n, B, T):
    model = random_model(VOCAB, cell, layers)
    ids = VOCAB.encode(TEXT[:n])
    result = fastrnn.evaluate(model, VOCAB, TEXT[:n], batch_size=B, seq_length=T)
    Bv = next(eval_chunks(ids, B, T))[0].shape[0]
    expected, count = loss_stream_by_stream(model, ids, Bv)
    assert result.chars_scored == count == n - Bv
    assert result.nats_per_char == pytest.approx(expected, rel=1e-10)


def test_equals_the_mean_over_validation_chunks_when_they_cover_the_text():
    """B*(k*T + 1) characters: the chunks are exactly training's validation chunks."""
    B, T = 5, 20
    text = TEXT[: B * (6 * T + 1)]
    model = random_model(VOCAB, "lstm")
    chunks = validation_chunks(VOCAB.encode(text), B, T)
    assert len(list(eval_chunks(VOCAB.encode(text), B, T))) == len(chunks) == 6
    h, losses = model.initial_state(B), []
    for x, y in chunks:
        loss, h = model.loss(x, y, h)
        losses.append(loss)
    result = fastrnn.evaluate(model, VOCAB, text, batch_size=B, seq_length=T)
    assert result.nats_per_char == pytest.approx(np.mean(losses), rel=1e-12)


def test_chunks_score_every_character_but_the_first_of_each_stream():
    ids = np.arange(1003) % 50
    seen = []
    for _x, y, _continues in eval_chunks(ids, 4, 30):
        seen.append(y.ravel())
    targets = np.sort(np.concatenate(seen))
    # streams of 250 (the last 253): their first characters 0, 250, 500, 750 are not targets
    expected = np.sort(np.delete(ids, [0, 250, 500, 750]))
    np.testing.assert_array_equal(targets, expected)


def test_units_and_float32():
    model = random_model(VOCAB, "gru", dtype=np.float32)
    r = fastrnn.evaluate(model, VOCAB, TEXT)
    assert r.bits_per_char == pytest.approx(r.nats_per_char / math.log(2), rel=1e-15)
    assert r.perplexity == pytest.approx(math.exp(r.nats_per_char), rel=1e-15)
    assert r.seconds > 0 and r.chars_per_sec == pytest.approx(r.chars_scored / r.seconds)
    ref = fastrnn.evaluate(model, VOCAB, TEXT, backend="numpy")
    assert r.nats_per_char == pytest.approx(ref.nats_per_char, rel=1e-5)


def test_unknown_characters_are_named_or_skipped():
    model = random_model(VOCAB)
    text = TEXT[:400] + "é\u4e2d" + TEXT[400:800] + "é"
    with pytest.raises(fastrnn.errors.CorpusError, match=r"2 distinct .*'é', '中'"):
        fastrnn.evaluate(model, VOCAB, text)
    r = fastrnn.evaluate(model, VOCAB, text, skip_unknown=True, batch_size=3)
    clean = fastrnn.evaluate(model, VOCAB, TEXT[:800], batch_size=3)
    assert r.chars_skipped == 3 and clean.chars_skipped == 0
    assert r.nats_per_char == clean.nats_per_char and r.chars_scored == clean.chars_scored


def test_too_short_text():
    with pytest.raises(fastrnn.errors.CorpusError, match="at least 2"):
        fastrnn.evaluate(random_model(VOCAB), VOCAB, "a")


def test_combine_weights_by_characters():
    a = fastrnn.EvalResult(1.0, 100, 1, 0.5)
    b = fastrnn.EvalResult(2.0, 300, 2, 1.5)
    c = combine([a, b])
    assert c.nats_per_char == pytest.approx(1.75) and c.chars_scored == 400
    assert c.chars_skipped == 3 and c.seconds == 2.0


@pytest.fixture
def files(tmp_path):
    model = random_model(VOCAB, "lstm")
    ckpt = write_checkpoint(tmp_path / "m.npz", model, VOCAB)
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text(TEXT[:1200], encoding="utf-8")
    b.write_text(TEXT[1200:], encoding="utf-8")
    return model, ckpt, str(a), str(b)


def test_cli_text_and_json(files, capsys):
    model, ckpt, a, b = files
    assert eval_main([ckpt, a, b, "--batch-size", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == [a, b, "overall"]
    ra = fastrnn.evaluate(model, VOCAB, TEXT[:1200], batch_size=4)
    assert f"{ra.bits_per_char:.4f} bits/char" in lines[0]
    assert eval_main([ckpt, a, b, "--batch-size", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rb = fastrnn.evaluate(model, VOCAB, TEXT[1200:], batch_size=4)
    assert out["files"][0]["file"] == a
    assert out["files"][0]["nats_per_char"] == pytest.approx(ra.nats_per_char, rel=1e-12)
    assert out["files"][1]["bits_per_char"] == pytest.approx(rb.bits_per_char, rel=1e-12)
    overall = (ra.nats_per_char * ra.chars_scored + rb.nats_per_char * rb.chars_scored) / (
        ra.chars_scored + rb.chars_scored
    )
    assert out["overall"]["nats_per_char"] == pytest.approx(overall, rel=1e-12)
    assert out["overall"]["chars_scored"] == ra.chars_scored + rb.chars_scored


def test_cli_unknown_characters(files, tmp_path, capsys):
    _, ckpt, a, _ = files
    bad = tmp_path / "bad.txt"
    bad.write_text(TEXT[:500] + "\u4e2d", encoding="utf-8")
    assert eval_main([ckpt, a, str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"fastrnn-eval: error: {bad}: ")
    assert "'中'" in err[0] and "--skip-unknown" in err[0]
    assert eval_main([ckpt, str(bad), "--skip-unknown", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["files"][0]["chars_skipped"] == 1


def test_cli_bad_options(files, capsys):
    _, ckpt, a, _ = files
    with pytest.raises(SystemExit) as exc:
        eval_main([ckpt, a, "--batch", "4"])  # no abbreviations
    assert exc.value.code == 2
    assert eval_main([ckpt, str(a) + ".missing"]) == 1
    assert "no such file" in capsys.readouterr().err
