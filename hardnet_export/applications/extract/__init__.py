"""Bulk extraction: the features of whole image collections in one hloc ``features.h5``,
on this machine or on a Ray cluster, each image exactly once.

:func:`extract` lists the images (:mod:`.listing`), skips those already described, runs an
engine (:mod:`.engines`: ``local`` or ``ray``) over the stages (:mod:`.stages`), whose
workers write atomic shards, and merges the shards into the output (:mod:`.shards`).
"""

from hardnet_export.applications.extract.engines import ENGINES, Engine, Scale
from hardnet_export.applications.extract.listing import ImageItem, list_images
from hardnet_export.applications.extract.run import (
    ExtractEvent,
    ExtractSummary,
    errors_path,
    extract,
)
from hardnet_export.applications.extract.shards import parts_folder, runs_of

__all__ = [
    "ENGINES",
    "Engine",
    "ExtractEvent",
    "ExtractSummary",
    "ImageItem",
    "Scale",
    "errors_path",
    "extract",
    "list_images",
    "parts_folder",
    "runs_of",
]
