"""clipmem: measure memorization in CLIP models and find mis-captioned image-caption pairs."""

from .cache import Run, list_runs, load_run
from .errors import ClipmemError

__version__ = "0.1.0"
__all__ = ["ClipmemError", "Run", "__version__", "list_runs", "load_run"]
