# Type stub of the compiled kernel (_kernel.pyx and its included parts) for mypy: the module
# exists only once built, and its functions take typed memoryviews that the type system cannot
# express, so every name is Any. What the functions compute is in _kernel.pyx's table of contents.
from typing import Any

def __getattr__(name: str) -> Any: ...
