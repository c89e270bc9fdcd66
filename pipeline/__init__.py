"""Superpixel saliency pipeline: cached stages over an image pool (CLI: ``python -m pipeline``)."""

__version__ = "0.1.0"
