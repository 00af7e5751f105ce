"""Evaluation: FPR95, HPatches mAP, matching accuracy against OpenCV SIFT."""

from hardnet_export.evaluation.metrics import fpr95

__all__ = ["fpr95"]
