"""The cell viewer: one self-contained HTML page showing what the hidden units respond to.

    fastrnn.viewer.write_view(model, vocab, text, "view.html")

As in Karpathy, Johnson and Fei-Fei, "Visualizing and Understanding Recurrent Networks": the text
with each character's background coloured by one unit's activation after reading it (the hidden
state h, and for the LSTM the cell state c squashed by tanh), a control to switch units, and the
units ranked by how interpretable they look: by their strongest correlation with a simple feature
of the text (inside quotes, inside brackets, position in the line, start of a word, ...) or by
their variance. Hovering over a character shows the model's five likeliest next characters and
the surprisal of the actual next one in bits.

The page has no network access of any kind: inline CSS and JavaScript, the data as JSON in a
<script type="application/json"> element (activations rounded to 3 decimals).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from .data import Vocabulary, describe_chars
from .errors import ConfigError, CorpusError
from .model import CharRNN

DEFAULT_MAX_CHARS = 5000  # characters shown: the page stays fast with one span per character
TOP_K = 5  # next-character predictions shown on hover
DECIMALS = 3
VOWELS = frozenset("aeiouAEIOU")
OPENING, CLOSING = "([{", ")]}"


# ---------------------------------------------------------------------------- running the model


@dataclass
class Activations:
    """The model read over a text of N characters, one character at a time (B = 1).

    h      (N, L, H)  hidden state of every layer after reading character t
    c      (N, L, H)  LSTM cell state after reading character t (None for rnn and gru)
    logits (N, V)     the prediction of character t + 1 made after reading character t
    """

    h: np.ndarray
    c: np.ndarray | None
    logits: np.ndarray


def run_states(model: CharRNN, ids: np.ndarray) -> Activations:
    """Activations of the model over ids from a zero state, the state carried throughout."""
    N, L, H = ids.size, model.num_layers, model.hidden_size
    h_all = np.empty((N, L, H))
    c_all = np.empty((N, L, H)) if model.cell_spec.cell_state else None
    logits = np.empty((N, model.vocab_size))
    state = model.initial_state(1)
    for t in range(N):
        out, state = model.step_logits(ids[t : t + 1], state)
        s = state.reshape(model.state_shape(1))  # (L, 1, H), or (2, L, 1, H) for lstm
        h_all[t] = s[0, :, 0] if c_all is not None else s[:, 0]
        if c_all is not None:
            c_all[t] = s[1, :, 0]
        logits[t] = out[0]
    return Activations(h_all, c_all, logits)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """(N, V) log-probabilities of the rows of logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def surprisal_bits(logits: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """(N - 1,) -log2 p(ids[t + 1] | text up to t): the surprise of each actual next character."""
    logp = log_softmax(logits[:-1])
    return -logp[np.arange(ids.size - 1), ids[1:]] / np.log(2.0)


def top_predictions(logits: np.ndarray, k: int = TOP_K) -> tuple[np.ndarray, np.ndarray]:
    """((N, k) indices, (N, k) probabilities) of the k likeliest next characters, best first."""
    probs = np.exp(log_softmax(logits))
    k = min(k, probs.shape[1])
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return top, np.take_along_axis(probs, top, axis=1)


# ---------------------------------------------------------------------------- text features


def text_features(text: str) -> dict[str, np.ndarray]:
    """(N,) float features of each character position t, describing the text read up to t.

    inside quotes    1 between an opening '"' and its closing one (both included)
    inside brackets  1 while more ( [ { than ) ] } have been read (the brackets included)
    position in line characters since the last newline (0 at a newline)
    start of a word  1 at a letter that follows a non-letter
    vowel, space, punctuation, uppercase, digit: 1 where the character is one
    """
    N = len(text)
    quote, depth, column = np.zeros(N), np.zeros(N), np.zeros(N)
    inside, level, col = False, 0, 0
    for t, ch in enumerate(text):
        if ch == '"':
            inside = not inside
        quote[t] = 1.0 if inside or ch == '"' else 0.0
        if ch in OPENING:
            level += 1
        depth[t] = 1.0 if level > 0 else 0.0
        if ch in CLOSING:
            level = max(0, level - 1)
        col = 0 if ch == "\n" else col + 1
        column[t] = col
    letters = np.array([ch.isalpha() for ch in text], dtype=bool)
    word_start = letters & ~np.concatenate([[False], letters[:-1]])

    def where(test) -> np.ndarray:
        return np.array([1.0 if test(ch) else 0.0 for ch in text])

    return {
        "inside quotes": quote,
        "inside brackets": depth,
        "position in line": column,
        "start of a word": word_start.astype(float),
        "vowel": where(VOWELS.__contains__),
        "space": where(str.isspace),
        "punctuation": where(_is_punctuation),
        "uppercase": where(str.isupper),
        "digit": where(str.isdigit),
    }


def _is_punctuation(ch: str) -> bool:
    return not (ch.isalnum() or ch.isspace())


def correlations(acts: np.ndarray, features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{feature: (H,) Pearson correlation of each unit's activation (N, H) with it}; 0 where
    either side is constant."""
    a = acts - acts.mean(axis=0)
    a_norm = np.sqrt((a * a).sum(axis=0))
    out = {}
    for name, f in features.items():
        d = f - f.mean()
        denom = a_norm * np.sqrt(d @ d)
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where(denom > 0, (d @ a) / np.where(denom > 0, denom, 1.0), 0.0)
        out[name] = r
    return out


def rank_units(acts: np.ndarray, features: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Every unit with its best feature (largest |r|), r and variance, sorted by |r| then
    variance, most interpretable first."""
    corr = correlations(acts, features)
    names = list(corr)
    table = np.abs(np.stack([corr[n] for n in names]))  # (F, H)
    best = table.argmax(axis=0)
    variance = acts.var(axis=0)
    units = [
        {
            "unit": int(u),
            "feature": names[best[u]],
            "r": float(corr[names[best[u]]][u]),
            "variance": float(variance[u]),
        }
        for u in range(acts.shape[1])
    ]
    return sorted(units, key=lambda e: (-abs(e["r"]), -e["variance"], e["unit"]))


# ---------------------------------------------------------------------------- the page's data


def view_data(
    model: CharRNN,
    vocab: Vocabulary,
    text: str,
    layer: int | None = None,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> dict[str, Any]:
    """Everything the page shows, JSON-able: the text (capped at max_chars), per kind ('h', and
    'c' for the LSTM) the activations acts[kind][unit] (N values, 3 decimals) and the ranking;
    per position the top predictions and the next character's surprisal in bits."""
    layer = model.num_layers - 1 if layer is None else layer
    if not 0 <= layer < model.num_layers:
        raise ConfigError(f"--layer must be in [0, {model.num_layers - 1}], got {layer}")
    if max_chars < 2:
        raise ConfigError(f"--max-chars must be >= 2, got {max_chars}")
    total = len(text)
    text = text[:max_chars]
    unknown = vocab.unknown_chars(text)
    if unknown:
        raise CorpusError(
            "the text has characters outside the model's vocabulary: " + describe_chars(unknown)
        )
    if len(text) < 2:
        raise CorpusError("the text needs at least 2 characters")
    ids = vocab.encode(text).astype(np.int64)
    run = run_states(model, ids)
    kinds = {"h": run.h[:, layer]}
    if run.c is not None:
        kinds["c"] = np.tanh(run.c[:, layer])
    features = text_features(text)
    top, probs = top_predictions(run.logits)
    return {
        "text": text,
        "total_chars": total,
        "max_chars": max_chars,
        "layer": layer,
        "num_layers": model.num_layers,
        "cell": model.cell,
        "hidden_size": model.hidden_size,
        "acts": {k: np.round(a.T, DECIMALS).tolist() for k, a in kinds.items()},
        "ranking": {k: rank_units(a, features) for k, a in kinds.items()},
        "top_chars": [[vocab.chars[i] for i in row] for row in top.tolist()],
        "top_probs": np.round(probs, DECIMALS).tolist(),
        "surprisal": np.round(surprisal_bits(run.logits, ids), DECIMALS).tolist() + [None],
    }


def embed_json(data: dict[str, Any]) -> str:
    """JSON safe inside a <script> element: '<' is escaped, so no '</script>' can end it."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


def render_html(data: dict[str, Any]) -> str:
    """The self-contained page: PAGE with the data embedded."""
    cap = (
        f"the first {len(data['text']):,} of {data['total_chars']:,} characters (capped at "
        f"{data['max_chars']:,}; change with --max-chars)"
        if data["total_chars"] > len(data["text"])
        else f"{len(data['text']):,} characters"
    )
    title = (
        f"fastrnn cell viewer: {data['cell']}, layer {data['layer']} of "
        f"{data['num_layers']}, H={data['hidden_size']}; {cap}"
    )
    return PAGE.replace("%TITLE%", _escape(title)).replace("%DATA%", embed_json(data))


def _escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def write_view(
    model: CharRNN,
    vocab: Vocabulary,
    text: str,
    path: str | os.PathLike,
    layer: int | None = None,
    max_chars: int = DEFAULT_MAX_CHARS,
) -> dict[str, Any]:
    """Write the page for text to path; returns its data (view_data)."""
    data = view_data(model, vocab, text, layer, max_chars)
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(render_html(data))
    except OSError as exc:
        raise ConfigError(f"cannot write {os.fspath(path)}: {exc.strerror or exc}") from None
    return data


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>%TITLE%</title>
<style>
body { font-family: sans-serif; margin: 0; display: flex; height: 100vh; color: #222; }
#side { width: 290px; overflow-y: auto; border-right: 1px solid #ccc; padding: 8px;
        font-size: 13px; flex: none; }
#main { flex: 1; overflow-y: auto; padding: 8px 16px; }
#text { font-family: monospace; font-size: 14px; white-space: pre-wrap; line-height: 1.5; }
#text span { cursor: default; }
#text span.on { outline: 1px solid #000; }
#tip { position: fixed; bottom: 8px; right: 8px; background: #fff; border: 1px solid #888;
       padding: 6px 10px; font-family: monospace; font-size: 13px; min-width: 240px; }
#rank li { cursor: pointer; padding: 1px 2px; } #rank li:hover { background: #eee; }
#rank li.sel { background: #dde; } h1 { font-size: 15px; margin: 4px 0 8px; }
.bar { display: inline-block; height: 9px; background: #69c; vertical-align: middle; }
</style></head>
<body>
<div id="side">
<h1>%TITLE%</h1>
<div>state <select id="kind"></select> unit <input id="unit" type="number" min="0" value="0"
 style="width:5em"></div>
<div>rank by <select id="order"><option value="r">strongest |correlation| with a feature</option>
<option value="variance">largest variance</option></select></div>
<div style="margin-top:4px">colour: <span style="background:rgb(90,110,255)">&nbsp;-1&nbsp;</span>
<span style="background:#fff">&nbsp;0&nbsp;</span>
<span style="background:rgb(255,90,70)">&nbsp;+1&nbsp;</span>
(c is shown as tanh(c))</div>
<ol id="rank"></ol>
</div>
<div id="main"><div id="text"></div></div>
<div id="tip">hover over a character</div>
<script type="application/json" id="data">%DATA%</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const textDiv = document.getElementById("text"), tip = document.getElementById("tip");
const kindSel = document.getElementById("kind"), unitIn = document.getElementById("unit");
const orderSel = document.getElementById("order"), rankList = document.getElementById("rank");
const chars = Array.from(D.text);  // one entry per character, also outside the BMP
const spans = [];
for (const [i, ch] of chars.entries()) {
  const s = document.createElement("span");
  s.textContent = ch === "\\n" ? "\\u21b5\\n" : ch;
  s.dataset.i = i;
  textDiv.appendChild(s);
  spans.push(s);
}
for (const k of Object.keys(D.acts)) {
  const o = document.createElement("option");
  o.value = k; o.textContent = k === "h" ? "hidden h" : "cell tanh(c)";
  kindSel.appendChild(o);
}
unitIn.max = D.hidden_size - 1;
function colour(v) {
  const a = Math.min(1, Math.abs(v));
  const [r, g, b] = v >= 0 ? [255, 90, 70] : [90, 110, 255];
  const mix = (c) => Math.round(255 + (c - 255) * a);
  return "rgb(" + mix(r) + "," + mix(g) + "," + mix(b) + ")";
}
function show() {
  const kind = kindSel.value, unit = Math.max(0, Math.min(D.hidden_size - 1, +unitIn.value || 0));
  const acts = D.acts[kind][unit];
  for (let i = 0; i < spans.length; i++) spans[i].style.background = colour(acts[i]);
  for (const li of rankList.children) li.classList.toggle("sel", +li.dataset.unit === unit);
}
function fill() {
  const entries = D.ranking[kindSel.value].slice();
  if (orderSel.value === "variance") entries.sort((a, b) => b.variance - a.variance);
  const vmax = Math.max(...entries.map((e) => e.variance)) || 1;
  rankList.innerHTML = "";
  for (const e of entries) {
    const li = document.createElement("li");
    li.dataset.unit = e.unit;
    li.textContent = "unit " + e.unit + ": " + e.feature + " (r = " + e.r.toFixed(2) +
      "), var " + e.variance.toFixed(3) + " ";
    const bar = document.createElement("span");
    bar.className = "bar"; bar.style.width = Math.round(60 * e.variance / vmax) + "px";
    li.appendChild(bar);
    li.onclick = () => { unitIn.value = e.unit; show(); };
    rankList.appendChild(li);
  }
  show();
}
const shown = (c) => JSON.stringify(c).replace(/&/g, "&amp;").replace(/</g, "&lt;");
function describe(k) {
  const kind = kindSel.value, unit = +unitIn.value || 0;
  for (const s of textDiv.querySelectorAll("span.on")) s.classList.remove("on");
  spans[k].classList.add("on");
  let html = "after " + shown(chars[k]) + " (" + kind + "[" + unit + "] = " +
    D.acts[kind][unit][k].toFixed(3) + ")<br>";
  if (D.surprisal[k] !== null)
    html += "next " + shown(chars[k + 1]) + ": " + D.surprisal[k].toFixed(2) + " bits<br>";
  html += "top 5:<br>";
  for (let j = 0; j < D.top_chars[k].length; j++)
    html += "&nbsp;" + shown(D.top_chars[k][j]) + " " + D.top_probs[k][j].toFixed(3) + "<br>";
  tip.innerHTML = html;
}
textDiv.addEventListener("mouseover", (ev) => {
  const i = ev.target.dataset ? ev.target.dataset.i : undefined;
  if (i !== undefined) describe(+i);
});
kindSel.onchange = fill; orderSel.onchange = fill; unitIn.oninput = show;
unitIn.value = D.ranking[kindSel.value][0].unit;
fill();
describe(Math.min(7, spans.length - 1));  // an example until the pointer moves
</script>
</body></html>
"""
