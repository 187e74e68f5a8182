"""modelint: find PyTorch train/eval mode misuse before it costs a week."""

__version__ = "0.1.0"
