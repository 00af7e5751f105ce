"""Reading images and turning them into the grayscale uint8 the descriptors see."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from hardnet_export.errors import InputError, MissingFileError


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as grayscale uint8.

    Raises:
        FileNotFoundError: no such file.
        ValueError: OpenCV cannot decode it.

    Shape:
        - Output: (H, W) uint8.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"image not found: {path}")
    # imdecode instead of imread: it handles non-ASCII paths on every platform.
    image = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise InputError(f"{path} is not an image OpenCV can read")
    return image
