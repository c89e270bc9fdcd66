"""Saliency detectors: the embedded U^2-Net-small prior (``u2netp``), the classical ``contrast`` map
and ARN.

Plain functions on numpy arrays; no file I/O, no caches, no CLI.
"""

from .contrast import contrast_saliency
from .u2netp import ModelNotFoundError, u2netp_features, u2netp_map, u2netp_model_path, u2netp_saliency

__all__ = ["contrast_saliency", "u2netp_saliency", "u2netp_map", "u2netp_features", "u2netp_model_path",
           "ModelNotFoundError"]
