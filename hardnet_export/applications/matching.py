"""Two-view matching: detect, describe, mutual nearest neighbours (and a ratio test), RANSAC.

The geometry is a homography (planar scenes, rotations) or a fundamental matrix (general
scenes), estimated with OpenCV's USAC (MAGSAC++) when the installed OpenCV has it, else
classic RANSAC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np

from hardnet_export.applications.detection import detect_keypoints, support_keypoints
from hardnet_export.errors import InputError
from hardnet_export.geometry import as_gray, keypoints_to_array
from hardnet_export.validate import check_float, check_int

GEOMETRIES = ("homography", "fundamental")
#: ``ratio="auto"``: the rule measured for each descriptor. HardNet: mutual nearest
#: neighbours without a ratio test gave the most correct inliers on every built-in planar
#: pair, in OpenCV's RANSAC and in COLMAP's verification (docs/sfm.md); SIFT: Lowe's 0.8.
AUTO = "auto"
HARDNET_RATIO: float | None = None
SIFT_RATIO = 0.8
_MIN_MATCHES = {"homography": 4, "fundamental": 8}
_ROWS_PER_BLOCK = 1024  # distance rows per block: bounds memory for large keypoint sets


@dataclass
class MatchResult:
    """What :func:`match_images` found.

    Attributes:
        keypoints1, keypoints2: the detected keypoints of each image.
        matches: index pairs (i into keypoints1, j into keypoints2), (M, 2) int64.
        inliers: which matches agree with ``model``, (M,) bool.
        model: the 3x3 homography (image 1 -> image 2) or fundamental matrix; None when
            there were too few matches or RANSAC failed.
        geometry: ``homography`` or ``fundamental``.
        descriptor: the describer's backend name (``opencv-sift`` for OpenCV's SIFT).
        distances: L2 descriptor distance of each match, (M,) float32.
    """

    keypoints1: list[cv2.KeyPoint]
    keypoints2: list[cv2.KeyPoint]
    matches: np.ndarray
    inliers: np.ndarray
    model: np.ndarray | None
    geometry: str
    descriptor: str
    distances: np.ndarray | None = None

    @property
    def n_inliers(self) -> int:
        return int(self.inliers.sum())

    @property
    def inlier_ratio(self) -> float:
        """Inliers over tentative matches (0 when there are no matches)."""
        return self.n_inliers / len(self.matches) if len(self.matches) else 0.0


def match_descriptors(
    descriptors1: np.ndarray,
    descriptors2: np.ndarray,
    *,
    ratio: float | None = 0.8,
    mutual: bool = True,
) -> np.ndarray:
    """Nearest-neighbour matches in L2 distance, optionally mutual and ratio-tested.

    A match (i, j) is kept when j is i's nearest neighbour, i is j's (``mutual``), and
    ``d(i, j) < ratio * d(i, second nearest)`` (``ratio``; None disables it).

    Raises:
        ValueError: descriptors of different widths or not 2-D, a ratio outside (0, 1].

    Shape:
        - descriptors1: (N1, D), descriptors2: (N2, D), float.
        - Output: (M, 2) int64 index pairs, sorted by i.
    """
    d1 = np.asarray(descriptors1, np.float32)
    d2 = np.asarray(descriptors2, np.float32)
    if d1.ndim != 2 or d2.ndim != 2 or d1.shape[1] != d2.shape[1]:
        raise InputError(
            f"descriptors must be (N1, D) and (N2, D) with the same D, got {d1.shape} and "
            f"{d2.shape}"
        )
    if ratio is not None and not 0.0 < ratio <= 1.0:
        raise InputError(f"ratio must be in (0, 1], got {ratio}")
    if len(d1) == 0 or len(d2) == 0:
        return np.zeros((0, 2), np.int64)
    sq2 = (d2 * d2).sum(1)
    nn = np.empty(len(d1), np.int64)
    first = np.empty(len(d1), np.float32)
    second = np.full(len(d1), np.inf, np.float32)
    col_best = np.full(len(d2), np.inf, np.float32)
    col_arg = np.zeros(len(d2), np.int64)
    for start in range(0, len(d1), _ROWS_PER_BLOCK):
        block = d1[start : start + _ROWS_PER_BLOCK]
        dist = (block * block).sum(1)[:, None] + sq2[None, :] - 2.0 * block @ d2.T
        np.maximum(dist, 0.0, out=dist)
        rows = np.arange(len(block))
        idx = dist.argmin(1)
        nn[start : start + len(block)] = idx
        first[start : start + len(block)] = dist[rows, idx]
        if len(d2) > 1:
            dist[rows, idx] = np.inf
            second[start : start + len(block)] = dist.min(1)
            dist[rows, idx] = first[start : start + len(block)]
        block_arg = dist.argmin(0)
        block_best = dist[block_arg, np.arange(len(d2))]
        better = block_best < col_best
        col_best[better] = block_best[better]
        col_arg[better] = block_arg[better] + start
    keep = np.ones(len(d1), bool)
    if mutual:
        keep &= col_arg[nn] == np.arange(len(d1))
    if ratio is not None:
        keep &= np.sqrt(first) < ratio * np.sqrt(second)
    i = np.flatnonzero(keep)
    return np.stack([i, nn[i]], axis=1).astype(np.int64)


def estimate_geometry(
    points1: np.ndarray, points2: np.ndarray, geometry: str = "homography", threshold: float = 3.0
) -> tuple[np.ndarray | None, np.ndarray]:
    """Robustly fit a homography or fundamental matrix; return (model, inlier mask).

    Shape:
        - points1, points2: (M, 2) float.
        - Output: (3, 3) float64 or None, (M,) bool.
    """
    if geometry not in GEOMETRIES:
        raise InputError(f"geometry must be one of {GEOMETRIES}, got {geometry!r}")
    mask = np.zeros(len(points1), bool)
    if len(points1) < _MIN_MATCHES[geometry]:
        return None, mask
    method = getattr(cv2, "USAC_MAGSAC", cv2.RANSAC)
    p1 = np.asarray(points1, np.float64).reshape(-1, 1, 2)
    p2 = np.asarray(points2, np.float64).reshape(-1, 1, 2)
    if geometry == "homography":
        model, found = cv2.findHomography(
            p1, p2, method, threshold, maxIters=10000, confidence=0.9999
        )
    else:
        model, found = cv2.findFundamentalMat(p1, p2, method, threshold, 0.9999, 10000)
    if model is None or found is None or model.shape != (3, 3):
        return None, mask
    return model, found.ravel().astype(bool)


class KeypointDescriber(Protocol):
    """Anything that describes an image at keypoints, like OpenCV's ``Feature2D.compute``:
    every :class:`Describer` and :class:`OpenCVSift`."""

    backend: str

    def compute(
        self, image: np.ndarray, keypoints: Sequence[cv2.KeyPoint]
    ) -> tuple[Any, np.ndarray]: ...


class OpenCVSift:
    """OpenCV's own SIFT descriptor at given keypoints: the baseline to compare HardNet with."""

    backend = "opencv-sift"

    def compute(
        self, image: np.ndarray, keypoints: Sequence[cv2.KeyPoint]
    ) -> tuple[Sequence[cv2.KeyPoint], np.ndarray]:
        """Descriptors at ``keypoints`` (all kept, in order).

        Shape:
            - Output: (K, 128) float32.
        """
        gray = as_gray(image)
        if not keypoints:
            return keypoints, np.zeros((0, 128), np.float32)
        kept, descriptors = cv2.SIFT_create().compute(gray, list(keypoints))
        if len(kept) != len(keypoints):
            raise RuntimeError("OpenCV SIFT dropped keypoints; cannot align descriptors")
        return keypoints, descriptors.astype(np.float32)


def auto_ratio(describer: object) -> float | None:
    """The ratio threshold ``ratio="auto"`` stands for: :data:`SIFT_RATIO` for a SIFT
    descriptor (:class:`OpenCVSift`, or None for COLMAP's own SIFT), else
    :data:`HARDNET_RATIO`."""
    sift = describer is None or isinstance(describer, OpenCVSift)
    return SIFT_RATIO if sift else HARDNET_RATIO


def check_ratio(ratio: float | str | None) -> None:
    """Raise InputError unless ``ratio`` is "auto", None or a number in (0, 1]."""
    if ratio is None or ratio == AUTO:
        return
    if isinstance(ratio, str):
        raise InputError(f"ratio must be a number in (0, 1], None or {AUTO!r}, got {ratio!r}")
    check_float("ratio", ratio, low=0.0, low_open=True, high=1.0)


def parse_ratio(text: str) -> float | str | None:
    """A ratio as written on a command line: ``auto``, ``none`` (no ratio test) or a number
    in (0, 1].

    Raises:
        ValueError: anything else, in one line.
    """
    word = text.strip().lower()
    if word == AUTO:
        return AUTO
    if word == "none":
        return None
    try:
        value = float(word)
    except ValueError:
        raise InputError(
            f"ratio must be a number in (0, 1], none or {AUTO}, got {text!r}"
        ) from None
    check_ratio(value)
    return value


def describe_with(
    describer: KeypointDescriber,
    image: np.ndarray,
    keypoints: list[cv2.KeyPoint],
    detector: str | None = None,
) -> np.ndarray:
    """Descriptors at ``keypoints`` from a Describer or :class:`OpenCVSift`; a Describer
    cuts the support of ``detector``, the keypoints' detector, where it has one
    (:data:`~hardnet_export.applications.detection.SUPPORTS`).

    Shape:
        - Output: (K, D) float32 (D = 128 for both).
    """
    magnification = getattr(describer, "magnification", None)
    if detector is not None and magnification is not None and keypoints:
        sized = keypoints_to_array(keypoints, default_size=1.0)
        cut = support_keypoints(sized, detector, magnification)
        return np.asarray(describer.compute(image, cut)[1], np.float32)
    return np.asarray(describer.compute(image, keypoints)[1], np.float32)


def match_images(
    image1: np.ndarray,
    image2: np.ndarray,
    describer: KeypointDescriber,
    *,
    detector: str = "sift",
    max_keypoints: int | None = 2000,
    geometry: str = "homography",
    ratio: float | str | None = AUTO,
    threshold: float = 3.0,
) -> MatchResult:
    """Detect, describe, match (mutual NN, with a ratio test for SIFT by default) and
    verify with RANSAC.

    Args:
        image1, image2: grayscale or BGR uint8 images.
        describer: a loaded :class:`Describer`, or :class:`OpenCVSift` for OpenCV's own.
        detector: one of :data:`~hardnet_export.applications.detection.DETECTORS`.
        max_keypoints: strongest keypoints kept per image.
        geometry: ``homography`` or ``fundamental``.
        ratio: Lowe's ratio-test threshold (None: mutual nearest neighbours only;
            ``"auto"``: the descriptor's measured rule, :func:`auto_ratio`).
        threshold: RANSAC inlier threshold in pixels.

    Shape:
        - image1, image2: (H, W) or (H, W, 3) uint8.
    """
    if geometry not in GEOMETRIES:
        raise InputError(f"geometry must be one of {GEOMETRIES}, got {geometry!r}")
    check_ratio(ratio)
    if isinstance(ratio, str):  # AUTO, the only string check_ratio lets through
        ratio = auto_ratio(describer)
    check_float("threshold", threshold, low=0.0, low_open=True, high=1000.0)
    kps1 = detect_keypoints(image1, detector=detector, max_keypoints=max_keypoints)
    kps2 = detect_keypoints(image2, detector=detector, max_keypoints=max_keypoints)
    desc1 = describe_with(describer, image1, kps1, detector)
    desc2 = describe_with(describer, image2, kps2, detector)
    matches = match_descriptors(desc1, desc2, ratio=ratio)
    pts1 = np.array([kps1[i].pt for i in matches[:, 0]], np.float64).reshape(-1, 2)
    pts2 = np.array([kps2[j].pt for j in matches[:, 1]], np.float64).reshape(-1, 2)
    model, inliers = estimate_geometry(pts1, pts2, geometry, threshold)
    distances = np.linalg.norm(desc1[matches[:, 0]] - desc2[matches[:, 1]], axis=1)
    return MatchResult(kps1, kps2, matches, inliers, model, geometry, describer.backend, distances)


#: Most match lines one picture shows: more hide each other and the images under them.
MAX_DRAWN = 200
_GREEN, _RED, _GREY = (60, 200, 60), (40, 40, 230), (170, 170, 170)


def draw_matches(
    image1: np.ndarray,
    image2: np.ndarray,
    result: MatchResult,
    *,
    inliers_only: bool = True,
    correct: np.ndarray | None = None,
    max_lines: int = MAX_DRAWN,
    title: str | None = None,
) -> np.ndarray:
    """The two images side by side, the (inlier) matches as thin lines, and a legend.

    At most ``max_lines`` lines are drawn (an even sample of the matches, always the same).
    With ground truth (``correct``: one bool per match) a line is green when the match is
    correct and red when not; without it the colour runs from yellow (small descriptor
    distance) to purple (large). The legend under the images gives the counts.

    Shape:
        - correct: (M,) bool, M = len(result.matches).
        - Output: (max(H1, H2) + legend, W1 + W2, 3) uint8 BGR.
    """
    check_int("max_lines", max_lines, low=1, high=100_000)
    if correct is not None:
        correct = np.asarray(correct, bool)
        if correct.shape != (len(result.matches),):
            raise InputError(
                f"correct must hold one bool per match ({len(result.matches)}), got shape "
                f"{correct.shape}"
            )
    gray1, gray2 = as_gray(image1), as_gray(image2)
    width = gray1.shape[1] + gray2.shape[1]
    scale = max(1.0, width / 1200)  # text and strokes readable at any image size
    canvas = _side_by_side(gray1, gray2, legend_h=int(round(64 * scale)))
    keep = result.inliers if inliers_only else np.ones(len(result.matches), bool)
    shown = np.flatnonzero(keep)
    if len(shown) > max_lines:
        shown = shown[np.linspace(0, len(shown) - 1, max_lines).round().astype(int)]
    thickness = max(1, int(round(scale)))
    colours = _line_colours(shown, correct, result.distances)
    _draw_lines(canvas, result, shown, colours, thickness, x_offset=gray1.shape[1])
    line1 = (
        f"{title or result.descriptor}: {len(result.keypoints1)} / {len(result.keypoints2)} "
        f"keypoints, {len(result.matches)} matches, {result.n_inliers} inliers "
        f"({result.geometry}); {len(shown)} lines drawn"
    )
    parts = _legend_parts(keep, shown, correct, result.distances)
    height = max(gray1.shape[0], gray2.shape[0])
    _draw_legend(canvas, height, line1, parts, scale, thickness)
    return canvas


def _side_by_side(gray1: np.ndarray, gray2: np.ndarray, legend_h: int) -> np.ndarray:
    """A white canvas with both images, dimmed, side by side and ``legend_h`` rows below.

    Shape:
        - gray1, gray2: (H1, W1), (H2, W2) uint8.
        - Output: (max(H1, H2) + legend_h, W1 + W2, 3) uint8 BGR.
    """
    h1, w1 = gray1.shape
    h2, w2 = gray2.shape
    canvas = np.full((max(h1, h2) + legend_h, w1 + w2, 3), 255, np.uint8)
    # Dimmed photos: the lines, not the texture, should catch the eye.
    canvas[:h1, :w1] = (cv2.cvtColor(gray1, cv2.COLOR_GRAY2BGR) * 0.75 + 32).astype(np.uint8)
    canvas[:h2, w1:] = (cv2.cvtColor(gray2, cv2.COLOR_GRAY2BGR) * 0.75 + 32).astype(np.uint8)
    return canvas


def _line_colours(
    shown: np.ndarray, correct: np.ndarray | None, distances: np.ndarray | None
) -> list[tuple[int, int, int]]:
    """One BGR colour per drawn match: green/red by ``correct``, else by descriptor distance
    (yellow small to purple large), else green.

    Shape:
        - shown: (L,) int, indices of the drawn matches.
        - correct, distances: (M,) bool and float, or None.
    """
    if correct is not None:
        return [_GREEN if correct[k] else _RED for k in shown]
    if distances is not None and len(shown):
        d = distances[shown]
        low, high = float(d.min()), float(d.max())
        level = ((d - low) / (high - low + 1e-12) * 255).astype(np.uint8)
        # Inverted viridis: small distances bright yellow, large ones dark purple.
        ramp = cv2.applyColorMap((255 - level)[:, None], cv2.COLORMAP_VIRIDIS)[:, 0]
        return [(int(b), int(g), int(r)) for b, g, r in ramp]
    return [_GREEN] * len(shown)


def _draw_lines(
    canvas: np.ndarray,
    result: MatchResult,
    shown: np.ndarray,
    colours: list[tuple[int, int, int]],
    thickness: int,
    x_offset: int,
) -> None:
    """Draw each shown match as a line between dots; image 2 starts at ``x_offset``."""
    for k, colour in zip(shown, colours, strict=True):
        i, j = result.matches[k]
        p1 = tuple(int(round(v)) for v in result.keypoints1[i].pt)
        x2, y2 = result.keypoints2[j].pt
        p2 = (int(round(x2)) + x_offset, int(round(y2)))
        cv2.line(canvas, p1, p2, colour, thickness, cv2.LINE_AA)
        cv2.circle(canvas, p1, 2 * thickness, colour, -1, cv2.LINE_AA)
        cv2.circle(canvas, p2, 2 * thickness, colour, -1, cv2.LINE_AA)


def _legend_parts(
    keep: np.ndarray,
    shown: np.ndarray,
    correct: np.ndarray | None,
    distances: np.ndarray | None,
) -> list[tuple[str, tuple[int, int, int]]]:
    """The legend's second line, as (text, BGR colour) pieces: the counts of correct and
    wrong matches, or what the colours mean.

    Shape:
        - keep: (M,) bool, the matches eligible for drawing; shown: (L,) int.
    """
    if correct is not None:
        drawn = correct[shown]
        right = int((keep & correct).sum())
        wrong = int((keep & ~correct).sum())
        return [
            (f"green: correct {right}", _GREEN),
            (f"red: wrong {wrong}", _RED),
            (f"(lines: {int(drawn.sum())} green, {int((~drawn).sum())} red)", (0, 0, 0)),
        ]
    if distances is not None:
        return [
            ("colour: descriptor distance,", (0, 0, 0)),
            ("yellow small", (0, 170, 200)),
            ("..", (0, 0, 0)),
            ("purple large", (84, 1, 68)),
            ("(no ground truth)", (0, 0, 0)),
        ]
    return [("no ground truth", _GREY)]


def _draw_legend(
    canvas: np.ndarray,
    height: int,
    line1: str,
    parts: list[tuple[str, tuple[int, int, int]]],
    scale: float,
    thickness: int,
) -> None:
    """Write the two legend lines below the images (row ``height`` on), the text shrunk
    until the longer line fits the canvas's width."""
    width = canvas.shape[1]
    font, size = cv2.FONT_HERSHEY_SIMPLEX, 0.55 * scale
    longest = max(
        cv2.getTextSize(line1, font, size, thickness)[0][0],
        cv2.getTextSize(" ".join(t for t, _ in parts), font, size, thickness)[0][0],
    )
    size *= min(1.0, (width - 20 * scale) / max(1, longest))
    y1, y2 = height + int(26 * scale), height + int(54 * scale)
    x = int(10 * scale)
    cv2.putText(canvas, line1, (x, y1), font, size, (0, 0, 0), thickness, cv2.LINE_AA)
    for text, colour in parts:
        cv2.putText(canvas, text, (x, y2), font, size, colour, thickness, cv2.LINE_AA)
        x += cv2.getTextSize(text + " ", font, size, thickness)[0][0]
