"""GradSal: DCNN gradient-descent object saliency (detector).

``saliency(image, model)`` runs Algorithm 1 of the paper: gradient descent on the input of
an ImageNet classifier to erase the recognised object (Eqs. 1-3), SLIC smoothing (Eq. 4) and
low-level refinement (Eqs. 5-6).  The building blocks are public for reuse and testing.
"""

from gradsal.descent import gradient_descent
from gradsal.postprocess import prune_normalize, refine, slic_smooth
from gradsal.saliency import GradSalResult, saliency

__all__ = ["saliency", "GradSalResult", "gradient_descent", "prune_normalize", "slic_smooth", "refine"]
