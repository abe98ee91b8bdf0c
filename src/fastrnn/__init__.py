"""fastrnn: a character-level recurrent language-model trainer with a compiled kernel."""
from .model import CharRNN

__all__ = ["CharRNN"]
__version__ = "0.1.0"
