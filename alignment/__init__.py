"""Alignment: EdgeBoxes proposals, dense SIFT, SIFT-Flow and the bi-level alignment (MIJR Sec. III-A)."""

from alignment.proposals import Proposals, edge_boxes, edge_map, proposals, select_proposals

__all__ = ["Proposals", "edge_boxes", "edge_map", "proposals", "select_proposals"]
