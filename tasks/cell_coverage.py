"""How much of each cell of the image's token grid the objects cover: the dense target of `--cell_loss_weight`.

The model reads a square image as a `grid` x `grid` array of tokens (one per SigLIP patch, row-major, y first), the
image squeezed to a square whatever its shape. A cell's target is the share of its area that lies inside at least
one box (their union: overlapping boxes are not counted twice), measured on `SAMPLES` x `SAMPLES` points per cell.

>>> cell_coverage([(0, 0, 50, 50)], 100, 100, grid=2)
[1.0, 0.0, 0.0, 0.0]
>>> cell_coverage([(0, 0, 100, 25)], 100, 100, grid=2)
[0.5, 0.5, 0.0, 0.0]
"""

import numpy as np

SAMPLES = 8  # points per cell side: coverage in steps of 1/64 of a cell


def cell_coverage(boxes, width: float, height: float, grid: int) -> list[float]:
    """(grid * grid,) shares in [0, 1], row-major, of the cells of a `width` x `height` image covered by the union
    of `boxes` ((x1, y1, x2, y2) pixels); a point counts when it lies inside a box (edges included on the left)."""
    side = grid * SAMPLES
    # Sample points at the centres of a side x side raster over the image, in the image's pixels.
    xs = (np.arange(side) + 0.5) * (width / side)
    ys = (np.arange(side) + 0.5) * (height / side)
    covered = np.zeros((side, side), dtype=bool)
    for x1, y1, x2, y2 in boxes:
        inside_x = (xs >= x1) & (xs < x2)
        inside_y = (ys >= y1) & (ys < y2)
        covered |= inside_y[:, None] & inside_x[None, :]
    shares = covered.reshape(grid, SAMPLES, grid, SAMPLES).mean(axis=(1, 3))
    return [float(share) for share in shares.reshape(-1)]
