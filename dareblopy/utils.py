"""DareBlopy 0.0.5's ``dareblopy.utils``: a grid of images for a quick look."""
from __future__ import annotations

import math

import numpy as np

__all__ = ["make_grid", "display_grid"]


def make_grid(tensor, nrow: int = 8, padding: int = 2) -> np.ndarray:
    """Tiles ``[N, 3, H, W]`` uint8 images into one ``[rows*(H+p)+p,
    cols*(W+p)+p, 3]`` picture, ``nrow`` images per row, with ``padding``
    black pixels around each (DareBlopy 0.0.5's layout)."""
    tensor = np.asarray(tensor)
    count, _, height, width = tensor.shape
    cols = min(nrow, count)
    rows = int(math.ceil(count / cols))
    cell_h, cell_w = height + padding, width + padding
    grid = np.zeros((3, cell_h * rows + padding, cell_w * cols + padding), np.uint8)
    for k in range(count):
        top = (k // cols) * cell_h + padding
        left = (k % cols) * cell_w + padding
        grid[:, top:top + height, left:left + width] = tensor[k]
    return grid.transpose(1, 2, 0)


def display_grid(tensor, nrow: int = 8, padding: int = 2) -> None:
    """Shows ``make_grid(tensor)`` in a Jupyter notebook (needs IPython and
    Pillow)."""
    import IPython.display
    import PIL.Image
    IPython.display.display(PIL.Image.fromarray(make_grid(tensor, nrow, padding)))
