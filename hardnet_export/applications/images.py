"""Reading images and turning them into the grayscale uint8 the descriptors see."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from hardnet_export.errors import InputError
from hardnet_export.geometry import as_gray
from hardnet_export.imagefile import decode_bytes, decode_image


def read_image(path: str | Path, *, max_image_pixels: int | None = None) -> np.ndarray:
    """Read an image file as grayscale uint8, its size checked from the header first.

    Args:
        path: any format OpenCV reads.
        max_image_pixels: refuse images with more pixels (width x height), read from the
            header before decoding; default: the environment variable
            ``HARDNET_EXPORT_MAX_IMAGE_PIXELS``, else
            :data:`~hardnet_export.imagefile.DEFAULT_MAX_IMAGE_PIXELS` (2**26).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a folder, an empty, truncated or corrupt file, one OpenCV cannot decode,
            one above the limit (:class:`~hardnet_export.imagefile.ImageTooLargeError`) or
            one that is not 8-bit; the message names the file.

    Shape:
        - Output: (H, W) uint8.
    """
    image = decode_image(path, flags=cv2.IMREAD_GRAYSCALE, max_image_pixels=max_image_pixels)
    return _gray8(image, path)


def decode_gray(
    data: bytes, name: str | Path, *, max_image_pixels: int | None = None
) -> np.ndarray:
    """:func:`read_image` of a file's bytes already read; ``name`` is what errors name.

    Raises:
        ValueError: as :func:`read_image`.

    Shape:
        - Output: (H, W) uint8.
    """
    image = decode_bytes(data, name, flags=cv2.IMREAD_GRAYSCALE, max_image_pixels=max_image_pixels)
    return _gray8(image, name)


def _gray8(image: np.ndarray, name: str | Path) -> np.ndarray:
    if image.dtype != np.uint8:
        raise InputError(
            f"{name} decodes to {image.dtype} values; expected an 8-bit image (convert it to "
            "PNG or JPEG first)"
        )
    # OpenCV 5 gives some formats (PFM) in colour even when grayscale is asked for.
    return as_gray(image)
