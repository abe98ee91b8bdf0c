"""Sampling: determinism, greedy and top-k, temperature, prime warm-up, streaming, bad options."""

import importlib

import numpy as np
import pytest

import fastrnn
from fastrnn.data import Vocabulary
from fastrnn.errors import ConfigError
from fastrnn.sample import generate, iter_sample, sample

# the attribute fastrnn.sample is the function
sample_module = importlib.import_module("fastrnn.sample")

TEXT = "the quick brown fox jumps over the lazy dog\n"


@pytest.fixture
def model_vocab():
    vocab = Vocabulary.from_text(TEXT)
    model = fastrnn.CharRNN(vocab.size, 16, dtype=np.float64, seed=3)
    model.params["Why"] *= 8  # sharper predictions than at initialisation
    return model, vocab


def greedy_by_hand(model, vocab, prime, length):
    h = model.initial_state(1)
    for ch in prime:
        logits, h = model.step_logits(vocab.encode(ch).astype(np.int32), h)
    out = []
    for _ in range(length):
        i = int(np.argmax(logits[0]))
        out.append(vocab.chars[i])
        logits, h = model.step_logits(np.array([i], dtype=np.int32), h)
    return "".join(out)


def test_same_seed_same_text_and_different_seeds_differ(model_vocab):
    model, vocab = model_vocab
    a = sample(model, vocab, 200, seed=11)
    assert a == sample(model, vocab, 200, seed=11)
    assert len(a) == 200 and set(a) <= set(vocab.chars)
    assert a != sample(model, vocab, 200, seed=12)


def test_greedy_follows_argmax_after_prime(model_vocab):
    model, vocab = model_vocab
    got = sample(model, vocab, 40, prime="the qu", greedy=True)
    assert got == greedy_by_hand(model, vocab, "the qu", 40)


def test_prime_changes_the_continuation(model_vocab):
    model, vocab = model_vocab
    assert sample(model, vocab, 60, prime="lazy", greedy=True) != sample(
        model, vocab, 60, prime="brown f", greedy=True
    )


def test_top_k_one_is_greedy_and_tiny_temperature_is_greedy(model_vocab):
    model, vocab = model_vocab
    greedy = sample(model, vocab, 50, prime="fox", greedy=True)
    assert sample(model, vocab, 50, prime="fox", top_k=1, seed=5) == greedy
    assert sample(model, vocab, 50, prime="fox", temperature=1e-4, seed=5) == greedy


def test_top_k_only_draws_from_the_k_likeliest(model_vocab):
    model, vocab = model_vocab
    h = model.initial_state(1)
    x = vocab.encode("t")[0]
    logits, _ = model.step_logits(np.array([x], dtype=np.int32), h)
    top3 = set(np.argsort(logits[0])[-3:].tolist())
    rng = np.random.default_rng(0)
    firsts = {next(generate(model, h, x, 1, top_k=3, rng=rng)) for _ in range(200)}
    assert firsts <= top3 and len(firsts) > 1


def test_huge_logits_stay_finite(model_vocab):
    model, vocab = model_vocab
    model.params["by"][vocab.chars.index("o")] = 1e4  # softmax must subtract the maximum
    assert sample(model, vocab, 30, seed=0) == "o" * 30


def test_kernel_and_numpy_generation_agree(model_vocab):
    model, vocab = model_vocab
    for kwargs in ({"seed": 9}, {"seed": 9, "top_k": 4, "temperature": 0.7}, {"greedy": True}):
        assert sample(model, vocab, 150, prime="the ", backend="kernel", **kwargs) == sample(
            model, vocab, 150, prime="the ", backend="numpy", **kwargs
        )


def test_text_does_not_depend_on_the_streaming_block(model_vocab, monkeypatch):
    model, vocab = model_vocab
    whole = sample(model, vocab, 300, seed=4)
    monkeypatch.setattr(sample_module, "STREAM_BLOCK", 7)
    assert sample(model, vocab, 300, seed=4) == whole


def test_temperature_spreads_or_sharpens_the_distribution(model_vocab):
    model, vocab = model_vocab
    cold = sample(model, vocab, 400, seed=1, temperature=0.3)
    hot = sample(model, vocab, 400, seed=1, temperature=3.0)
    assert len(set(hot)) > len(set(cold))


def test_streaming_callback_sees_every_character_in_order(model_vocab):
    model, vocab = model_vocab
    seen = []
    text = sample(model, vocab, 30, seed=2, on_text=seen.append)
    assert "".join(seen) == text
    assert "".join(iter_sample(model, vocab, 30, seed=2)) == text


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"temperature": -1.0}, "temperature must be > 0"),
        ({"top_k": 0}, r"top-k must be in \[1, 28\]"),
        ({"top_k": 29}, r"top-k must be in \[1, 28\]"),
        ({"length": -1}, "length"),
    ],
)
def test_bad_options(model_vocab, kwargs, match):
    model, vocab = model_vocab
    with pytest.raises(ConfigError, match=match):
        sample(model, vocab, **{"length": 5, **kwargs})


def test_prime_outside_vocabulary_lists_the_characters(model_vocab):
    model, vocab = model_vocab
    with pytest.raises(ConfigError, match="'Q', 'é'"):
        sample(model, vocab, 5, prime="Qué the")
