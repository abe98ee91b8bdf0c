"""The cell viewer: the page's embedded data equal the activations and predictions computed
directly, the page references nothing outside itself, and the text features and unit ranking
are right on a crafted text."""

import json
import re

import numpy as np
import pytest

from _tools import TEXT, random_model, write_checkpoint
from fastrnn import Vocabulary
from fastrnn.cli import inspect_main
from fastrnn.errors import ConfigError, CorpusError
from fastrnn.viewer import rank_units, render_html, text_features, view_data

VOCAB = Vocabulary.from_text(TEXT)
SHORT = TEXT[:300]


def embedded(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="data">(.*?)</script>', html, re.DOTALL)
    return json.loads(m.group(1))


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def check_predictions(data, ids, logits):
    probs = softmax(logits)
    for t in (0, 17, len(ids) - 1):
        order = np.argsort(-probs[t])[:5]
        assert data["top_chars"][t] == [VOCAB.chars[i] for i in order]
        np.testing.assert_allclose(data["top_probs"][t], probs[t, order], atol=5e-4)
    surprisal = -np.log2(probs[np.arange(len(ids) - 1), ids[1:]])
    np.testing.assert_allclose(data["surprisal"][:-1], surprisal, atol=5e-4)
    assert data["surprisal"][-1] is None


def test_rnn_page_data_equal_a_direct_loop():
    model = random_model(VOCAB, "rnn", hidden=10)
    p = model.params
    ids = VOCAB.encode(SHORT)
    h, hs = np.zeros(10), []
    for i in ids:  # h_t = tanh(Wxh[x_t] + h_{t-1} Whh + bh)
        h = np.tanh(p["Wxh"][i] + h @ p["Whh"] + p["bh"])
        hs.append(h)
    hs = np.array(hs)  # (N, H)
    data = embedded(render_html(view_data(model, VOCAB, SHORT)))
    assert data["text"] == SHORT and list(data["acts"]) == ["h"]
    np.testing.assert_allclose(np.array(data["acts"]["h"]).T, hs, atol=5e-4)
    check_predictions(data, ids, hs @ p["Why"] + p["by"])


def test_lstm_layers_and_cell_state_equal_the_kernel():
    model = random_model(VOCAB, "lstm", num_layers=2, hidden=8, scale=0.8)
    ids = VOCAB.encode(SHORT).astype(np.int32)[None]  # (1, N)
    model.loss(ids, ids, model.initial_state(1))
    ws = model._workspace(1, ids.shape[1], True)  # the kernel's caches: hs, cs (L, T, B, H)
    for layer in (0, 1):
        data = view_data(model, VOCAB, SHORT, layer=layer)
        np.testing.assert_allclose(np.array(data["acts"]["h"]).T, ws.hs[layer, :, 0], atol=5e-4)
        np.testing.assert_allclose(
            np.array(data["acts"]["c"]).T, np.tanh(ws.cs[layer, :, 0]), atol=5e-4
        )
    logits = ws.hs[1, :, 0] @ model.params["Why"] + model.params["by"]
    check_predictions(data, ids[0], logits)
    assert np.array(data["acts"]["c"]).std() > 0.1  # not a near-constant comparison


def test_page_is_self_contained_and_capped():
    model = random_model(VOCAB, "gru", hidden=6)
    text = TEXT[:700] + "</script><b>"
    html = render_html(view_data(model, VOCAB, TEXT[:700], max_chars=250))
    lower = html.lower()
    for needle in ("http", "src=", "<link", "@import", "url(", "//cdn", "fonts."):
        assert needle not in lower, needle
    assert "first 250 of 700 characters" in html and "--max-chars" in html
    assert len(embedded(html)["text"]) == 250
    assert html.count("<script") == 2 and html.count("</script>") == 2
    data = view_data(model, VOCAB, TEXT[:50])
    data["text"] = text  # a text that tries to close the script element stays inside it
    assert embedded(render_html(data))["text"] == text


def test_text_features_on_a_crafted_text():
    text = 'ab "c(d)" x\nYe1'
    f = text_features(text)
    #                   a  b  _  "  c  (  d  )  "  _  x  \n Y  e  1
    expect = {
        "inside quotes": [0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0],
        "inside brackets": [0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0],
        "position in line": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0, 1, 2, 3],
        "start of a word": [1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0],
        "vowel": [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0],
        "space": [0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0],
        "uppercase": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0],
        "digit": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    }
    for name, values in expect.items():
        np.testing.assert_array_equal(f[name], values, err_msg=name)


def test_ranking_finds_the_unit_that_tracks_a_feature():
    text = 'say "hello there" and (then) go "on" ' * 20
    f = text_features(text)
    rng = np.random.default_rng(0)
    N = len(text)
    acts = rng.normal(0, 1.0, size=(N, 4))  # loud noise: the largest variance
    acts[:, 2] = 0.3 * f["inside quotes"] - 0.1  # a quiet quote detector
    acts[:, 1] = -0.2 * f["inside brackets"] + 0.01 * rng.normal(size=N)
    ranking = rank_units(acts, f)
    assert [e["unit"] for e in ranking[:2]] == [2, 1]
    assert ranking[0]["feature"] == "inside quotes" and ranking[0]["r"] == pytest.approx(1.0)
    assert ranking[1]["feature"] == "inside brackets" and ranking[1]["r"] < -0.95
    by_variance = sorted(ranking, key=lambda e: -e["variance"])
    assert by_variance[-1]["unit"] == 1
    np.testing.assert_allclose(sorted(e["variance"] for e in ranking), sorted(acts.var(axis=0)))


def test_bad_requests():
    model = random_model(VOCAB, "rnn", num_layers=2, hidden=4)
    with pytest.raises(ConfigError, match="--layer must be in"):
        view_data(model, VOCAB, SHORT, layer=2)
    with pytest.raises(CorpusError, match="'中'"):
        view_data(model, VOCAB, SHORT + "中")


def test_cli(tmp_path, capsys):
    model = random_model(VOCAB, "lstm", hidden=6)
    ckpt = write_checkpoint(tmp_path / "m.npz", model, VOCAB)
    src = tmp_path / "t.txt"
    src.write_text(TEXT[:900], encoding="utf-8")
    out = tmp_path / "v.html"
    assert inspect_main([ckpt, str(src), "-o", str(out), "--max-chars", "400"]) == 0
    assert "most interpretable h unit" in capsys.readouterr().out
    data = embedded(out.read_text(encoding="utf-8"))
    assert data["text"] == TEXT[:400] and set(data["acts"]) == {"h", "c"}
    assert inspect_main([ckpt, str(src), "-o", str(out), "--layer", "3"]) == 2  # usage error
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fastrnn-inspect: error: --layer")
