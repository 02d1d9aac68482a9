"""medclass: a reproducible DVC + PyTorch pipeline for medical image classification."""

__version__ = "0.1.0"
