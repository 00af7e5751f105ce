"""Reading images and turning them into the grayscale uint8 the descriptors see."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def as_gray(image: np.ndarray) -> np.ndarray:
    """A grayscale view of an OpenCV image (BGR order for colour, as ``cv2.imread`` gives).

    Raises:
        TypeError: not a numpy array, or not uint8.
        ValueError: not (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), or empty.

    Shape:
        - image: (H, W), (H, W, 1), (H, W, 3) BGR or (H, W, 4) BGRA, uint8.
        - Output: (H, W) uint8, C-contiguous.
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy uint8 array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise TypeError(f"image must be uint8 (0..255), got dtype {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] in (3, 4):
        code = cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
        image = cv2.cvtColor(np.ascontiguousarray(image), code)
    if image.ndim != 2:
        raise ValueError(
            f"image must be grayscale (H, W) or BGR (H, W, 3), got shape {image.shape}"
        )
    if image.size == 0:
        raise ValueError(f"image is empty, shape {image.shape}")
    return np.ascontiguousarray(image)


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
        raise FileNotFoundError(f"image not found: {path}")
    # imdecode instead of imread: it handles non-ASCII paths on every platform.
    image = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError(f"{path} is not an image OpenCV can read")
    return image
