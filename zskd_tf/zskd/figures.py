"""OpenCV drawings of ZSKD products: the concentration heat map and a grid of impressions.

Pure functions from arrays to BGR uint8 images (white background, dark text), plus
:func:`write_png` (atomic). Used by ``tools/visualize_concentration.py`` and
``tools/visualize_samples.py``.
"""
from __future__ import annotations

import os

import cv2
import numpy as np

from zskd_tf.errors import UserError
from zskd_tf.runtime import atomic

FONT = cv2.FONT_HERSHEY_SIMPLEX
WHITE, INK = (255, 255, 255), (40, 40, 40)
_MARGIN = 12


def text_size(text: str, scale: float, thickness: int = 1) -> tuple[int, int]:
    (width, height), baseline = cv2.getTextSize(text, FONT, scale, thickness)
    return width, height + baseline


def put_text(image, text: str, left: int, top: int, scale: float, color=INK,
             thickness: int = 1) -> None:
    """Draws ``text`` with its bounding box's top-left corner at (left, top)."""
    (_, height), _ = cv2.getTextSize(text, FONT, scale, thickness)
    cv2.putText(image, text, (int(left), int(top + height)), FONT, scale, color, thickness,
                cv2.LINE_AA)


def _rotated_label(text: str, scale: float) -> np.ndarray:
    """``text`` written bottom-to-top (a vertical axis label), on white."""
    width, height = text_size(text, scale)
    canvas = np.full((height + 4, width + 4, 3), 255, np.uint8)
    put_text(canvas, text, 2, 2, scale)
    return cv2.rotate(canvas, cv2.ROTATE_90_COUNTERCLOCKWISE)


def heatmap(matrix, labels, title: str = "", vmin: float = 0.0, vmax: float = 1.0,
            annotate: bool | None = None) -> np.ndarray:
    """A square matrix as a viridis heat map: row labels on the left, column labels below
    (vertical), a colour bar on the right and, for up to 20 classes, the values in the cells."""
    matrix = np.asarray(matrix, np.float64)
    k = matrix.shape[0]
    if matrix.ndim != 2 or matrix.shape[1] != k or len(labels) != k:
        raise UserError(f"expected a square matrix with one label per row, got {matrix.shape} "
                        f"and {len(labels)} labels")
    annotate = k <= 20 if annotate is None else annotate
    cell = int(np.clip(720 // k, 12, 64))
    scale = 0.5 if cell >= 40 else 0.35
    labels = [str(label) for label in labels]
    label_width = max(text_size(label, scale)[0] for label in labels) + 2 * _MARGIN
    title_height = text_size(title, 0.6)[1] + 2 * _MARGIN if title else _MARGIN
    side = cell * k
    bar_width, tick_width = 18, text_size("0.00", 0.45)[0] + _MARGIN
    width = label_width + side + 3 * _MARGIN + bar_width + tick_width
    height = title_height + side + label_width + _MARGIN
    image = np.full((height, width, 3), 255, np.uint8)
    if title:
        put_text(image, title, (width - text_size(title, 0.6)[0]) // 2, _MARGIN, 0.6)

    def colours(values):
        scaled = np.clip((values - vmin) / (vmax - vmin), 0.0, 1.0)
        return cv2.applyColorMap(np.round(scaled * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)

    top, left = title_height, label_width
    image[top:top + side, left:left + side] = cv2.resize(
        colours(matrix), (side, side), interpolation=cv2.INTER_NEAREST)
    cv2.rectangle(image, (left - 1, top - 1), (left + side, top + side), INK, 1)
    for i, label in enumerate(labels):
        w, h = text_size(label, scale)
        put_text(image, label, left - _MARGIN // 2 - w, top + i * cell + (cell - h) // 2, scale)
        rotated = _rotated_label(label, scale)
        x = left + i * cell + (cell - rotated.shape[1]) // 2
        y = top + side + _MARGIN // 2
        image[y:y + rotated.shape[0], x:x + rotated.shape[1]] = np.minimum(
            image[y:y + rotated.shape[0], x:x + rotated.shape[1]], rotated)
    if annotate:
        value_scale = min(0.45, cell / 110)
        for (i, j), value in np.ndenumerate(matrix):
            text = f"{value:.2f}"
            w, h = text_size(text, value_scale)
            bright = (value - vmin) / (vmax - vmin) > 0.6  # viridis turns light: dark text
            put_text(image, text, left + j * cell + (cell - w) // 2,
                     top + i * cell + (cell - h) // 2, value_scale, INK if bright else WHITE)
    bar_left = left + side + 2 * _MARGIN
    ramp = colours(np.linspace(vmax, vmin, side)[:, None])
    image[top:top + side, bar_left:bar_left + bar_width] = np.repeat(ramp, bar_width, axis=1)
    cv2.rectangle(image, (bar_left - 1, top - 1), (bar_left + bar_width, top + side), INK, 1)
    for tick in np.linspace(vmin, vmax, 5):
        y = top + int(round((vmax - tick) / (vmax - vmin) * (side - 1)))
        cv2.line(image, (bar_left + bar_width, y), (bar_left + bar_width + 4, y), INK, 1)
        h = text_size(f"{tick:.2f}", 0.45)[1]
        put_text(image, f"{tick:.2f}", bar_left + bar_width + 7,
                 int(np.clip(y - h // 2, 0, height - h)), 0.45)
    return image


def _fit(text: str, scale: float, width: int) -> str:
    """``text`` shortened with '..' until it fits ``width`` pixels."""
    while len(text) > 3 and text_size(text, scale)[0] > width:
        text = text[:-3] + ".."
    return text


def image_grid(tiles, columns: int, tile: int = 112, title_lines: int = 2,
               title: str = "") -> np.ndarray:
    """A grid of ``(image, title lines)`` tiles, row by row, ``columns`` per row, under an
    optional ``title``.

    Each image is (H, W, C) in [0, 1] with C = 1 or 3 (RGB), drawn as a ``tile``-pixel square
    (nearest neighbour) under up to ``title_lines`` lines of title; None leaves the slot blank.
    """
    n = len(tiles)
    columns = max(1, min(columns, n))
    rows = -(-n // columns)
    scale, line = 0.42, text_size("Ag", 0.42)[1] + 3
    tile_width = max(tile, 128)
    cell_w, cell_h = tile_width + _MARGIN, tile + title_lines * line + _MARGIN
    header = text_size(title, 0.5)[1] + _MARGIN if title else 0
    grid = np.full((header + rows * cell_h + _MARGIN, columns * cell_w + _MARGIN, 3), 255,
                   np.uint8)
    if title:
        put_text(grid, _fit(title, 0.5, grid.shape[1] - 2 * _MARGIN), _MARGIN, _MARGIN, 0.5)
    for index, (image, lines) in enumerate(tiles):
        if image is None:
            continue
        image = np.asarray(image, np.float32)
        if image.ndim != 3 or image.shape[-1] not in (1, 3):
            raise UserError(f"expected images (H, W, 1 or 3), got {image.shape}")
        row, column = divmod(index, columns)
        x0, y0 = _MARGIN + column * cell_w, header + _MARGIN + row * cell_h
        for j, text in enumerate(list(lines)[:title_lines]):
            put_text(grid, _fit(str(text), scale, tile_width), x0, y0 + j * line, scale)
        pixels = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
        pixels = (cv2.cvtColor(pixels[..., 0], cv2.COLOR_GRAY2BGR) if pixels.shape[-1] == 1
                  else cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
        top, left = y0 + title_lines * line, x0 + (tile_width - tile) // 2
        grid[top:top + tile, left:left + tile] = cv2.resize(pixels, (tile, tile),
                                                            interpolation=cv2.INTER_NEAREST)
        cv2.rectangle(grid, (left - 1, top - 1), (left + tile, top + tile), (170, 170, 170), 1)
    return grid


def write_png(path: str, image: np.ndarray) -> None:
    """Writes ``image`` (BGR uint8) as a PNG, atomically."""
    if not str(path).lower().endswith(".png"):
        raise UserError(f"--out={path} must end with .png")
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError("OpenCV could not encode the PNG")
    try:
        atomic.write_bytes(str(path), encoded.tobytes())
    except OSError as e:
        raise UserError(f"cannot write --out={path}: {e.strerror or e}") from None


def _top2_titles(index: int, data, names) -> list:
    if data.soft_targets is None:
        return [f"{names[data.y[index]]} (label)"]
    probabilities = data.soft_targets[index]
    return [f"{names[c]} {probabilities[c]:.2f}" for c in np.argsort(-probabilities)[:2]]


def synthetic_grid(path: str, per_class: int = 8, max_classes: int = 20,
                   tile: int = 112) -> np.ndarray:
    """A synthetic-dataset ``.npz`` as a grid: one row per label y (up to ``max_classes``),
    ``per_class`` images each, titled with the top-2 classes of the stored soft targets."""
    from zskd_tf.data import preprocess as pp  # TensorFlow: only when a grid is drawn
    from zskd_tf.data import synthetic

    data = synthetic.load_synthetic(path)
    names = data.class_names
    images = pp.unprocess(data.x, data.input_spec).numpy()
    tiles = []
    for c in [c for c in range(data.num_classes) if np.any(data.y == c)][:max_classes]:
        chosen = np.flatnonzero(data.y == c)[:per_class]
        row = [(images[i], _top2_titles(i, data, names)) for i in chosen]
        tiles += row + [(None, [])] * (per_class - len(row))
    if not tiles:
        raise UserError(f"{path} holds no images")
    described = data.meta.get("extra", {}).get("soft_targets", "soft targets")
    title = (f"{os.path.basename(path)}: rows by label y; titles = top-2 of "
             f"{described if data.soft_targets is not None else 'y'}")
    return image_grid(tiles, per_class, tile, title=title)
