"""Drawing the mean transition curves of transition_curves runs (ZSKT Fig. 4 style), OpenCV
only.

One panel per run directory (left to right): the mean over all N x (C-1) curves of the target
class's probability under the attacked network (A, the student) and under the teacher (B),
each with a band of +-2 standard errors (std / sqrt(N x (C-1))), for steps 0..max_step.
No TensorFlow import, so the tool starts quickly.
"""
from __future__ import annotations

import json
import os

import cv2
import numpy as np

from zskd_tf.errors import UserError

PANEL_W, PANEL_H = 520, 400
MARGIN = dict(left=62, right=18, top=46, bottom=52)
COLOURS = {"netA": (40, 40, 220), "netB": (200, 110, 20)}  # BGR: red student, blue teacher
LABELS = {"netA": "attacked (student)", "netB": "teacher"}
BLACK, GREY, WHITE = (0, 0, 0), (215, 215, 215), (255, 255, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def mean_and_band(curves: np.ndarray, max_step: int):
    """Mean over all curves of (N, C-1, K) values, and 2 standard errors, for steps 0..max_step."""
    flat = np.asarray(curves, np.float64).reshape(-1, curves.shape[-1])[:, :max_step + 1]
    return flat.mean(0), 2.0 * flat.std(0) / np.sqrt(len(flat))


def _load(run_dir: str):
    path = os.path.join(run_dir, "curves.npz")
    if not os.path.exists(path):
        raise UserError(f"{path} does not exist: is {run_dir} a finished transition_curves run?")
    with np.load(path) as data:
        curves = {key: data[key] for key in COLOURS}
    result_path = os.path.join(run_dir, "result.json")
    result = json.load(open(result_path)) if os.path.exists(result_path) else {}
    return curves, result


def _draw_panel(curves: dict, result: dict, run_dir: str, max_step: int) -> np.ndarray:
    img = np.full((PANEL_H, PANEL_W, 3), 255, np.uint8)
    x0, x1 = MARGIN["left"], PANEL_W - MARGIN["right"]
    y0, y1 = PANEL_H - MARGIN["bottom"], MARGIN["top"]
    last = min(max_step, curves["netA"].shape[-1] - 1)

    def px(step, p):
        return (x0 + (x1 - x0) * step / max(last, 1), y0 + (y1 - y0) * np.clip(p, 0.0, 1.0))

    for p in np.linspace(0, 1, 6):  # horizontal grid and y ticks
        _, y = px(0, p)
        cv2.line(img, (x0, int(y)), (x1, int(y)), GREY, 1)
        cv2.putText(img, f"{p:.1f}", (x0 - 34, int(y) + 5), FONT, 0.4, BLACK, 1, cv2.LINE_AA)
    for step in range(0, last + 1, max(1, last // 6)):  # x ticks
        x, _ = px(step, 0)
        cv2.line(img, (int(x), y0), (int(x), y0 + 5), BLACK, 1)
        cv2.putText(img, str(step), (int(x) - 6, y0 + 20), FONT, 0.4, BLACK, 1, cv2.LINE_AA)
    cv2.rectangle(img, (x0, y1), (x1, y0), BLACK, 1)
    steps = np.arange(last + 1)
    for key, colour in COLOURS.items():
        mean, band = mean_and_band(curves[key], last)
        upper = np.stack(px(steps, mean + band), -1)
        lower = np.stack(px(steps, mean - band), -1)[::-1]
        overlay = img.copy()
        cv2.fillPoly(overlay, [np.round(np.concatenate([upper, lower])).astype(np.int32)], colour)
        cv2.addWeighted(overlay, 0.25, img, 0.75, 0, dst=img)
        line = np.round(np.stack(px(steps, mean), -1)).astype(np.int32)
        cv2.polylines(img, [line], False, colour, 2, cv2.LINE_AA)
    for i, (key, colour) in enumerate(COLOURS.items()):  # legend
        y = y1 + 18 + 18 * i
        cv2.line(img, (x1 - 170, y - 4), (x1 - 145, y - 4), colour, 2, cv2.LINE_AA)
        cv2.putText(img, LABELS[key], (x1 - 140, y), FONT, 0.42, BLACK, 1, cv2.LINE_AA)
    title = "/".join(os.path.normpath(os.path.abspath(run_dir)).split(os.sep)[-2:])
    if "mte" in result:
        title += f"   MTE {result['mte']:.3f}"
    cv2.putText(img, title, (x0, 20), FONT, 0.5, BLACK, 1, cv2.LINE_AA)
    cv2.putText(img, "adversarial step", ((x0 + x1) // 2 - 60, PANEL_H - 12), FONT, 0.45, BLACK,
                1, cv2.LINE_AA)
    cv2.putText(img, "p(target)", (4, y1 - 6), FONT, 0.45, BLACK, 1, cv2.LINE_AA)
    return img


def plot(run_dirs, out: str, max_step: int = 30) -> None:
    """Draws one panel per run directory, left to right, into one PNG.

    Args:
        run_dirs: finished ``transition_curves`` run directories (each with ``curves.npz``).
        out: the PNG to write; its folder is created.
        max_step: the last adversarial step drawn.

    Returns:
        None; UserError when a run has no curves or ``out`` cannot be written.
    """
    panels = [_draw_panel(*_load(d), d, max_step) for d in run_dirs]
    image = np.concatenate(panels, axis=1)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    if not cv2.imwrite(out, image):
        raise UserError(f"could not write {out} (is it a .png path in a writable directory?)")
