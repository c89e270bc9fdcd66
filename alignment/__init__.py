"""Alignment: EdgeBoxes proposals, dense SIFT, SIFT-Flow and the bi-level alignment (MIJR Sec. III-A).

    from alignment import proposals, dense_sift, sift_flow, pixel_features, bilevel_alignment
    p = proposals(image)                                   # Proposals(boxes (100, 4), scores)
    f = sift_flow(dense_sift(img_a), dense_sift(img_b))    # SiftFlowResult(vx, vy, cost, ...)
    r = bilevel_alignment(labels_a, labels_b, p_a.boxes, p_b.boxes, f.vx, f.vy,
                          pixel_features(img_a, sift_a), pixel_features(img_b, sift_b))
    # from full-size images, superpixels and boxes (SIFT on the working grid), as the stage runs it:
    r = align_pair(image_a, image_b, labels_a, labels_b, p_a.boxes, p_b.boxes, sift_a, sift_b, f.vx, f.vy)
"""

from alignment.bilevel import (
    BilevelAlignment,
    FlowMatches,
    bilevel_alignment,
    pixel_features,
    siftflow_match,
    superpixel_distance,
)
from alignment.dense_sift import dense_sift
from alignment.pair import align_pair, to_working_grid, working_image
from alignment.proposals import Proposals, edge_boxes, edge_map, proposals, select_proposals
from alignment.siftflow import SiftFlowResult, sift_flow

__all__ = [
    "Proposals", "edge_boxes", "edge_map", "proposals", "select_proposals",
    "dense_sift", "SiftFlowResult", "sift_flow",
    "BilevelAlignment", "FlowMatches", "pixel_features", "superpixel_distance",
    "siftflow_match", "bilevel_alignment", "align_pair", "to_working_grid", "working_image",
]
