"""fastrnn: a character-level recurrent language-model trainer with a compiled kernel."""

from .checkpoint import load_checkpoint, load_model
from .data import Vocabulary
from .evaluate import EvalResult, evaluate
from .model import CharRNN
from .sample import sample, sample_many
from .train import TrainConfig, train

__all__ = [
    "CharRNN",
    "Vocabulary",
    "TrainConfig",
    "train",
    "sample",
    "sample_many",
    "load_checkpoint",
    "load_model",
    "evaluate",
    "EvalResult",
]
__version__ = "0.1.0"
