"""Tiles of an image in its own pixels: the grid that inference and evaluation answer, the random tiles that training
cuts, and boxes clipped to a tile. Pure geometry (no image is read here), shared by the tasks, `rasters` and
`scenes`, so that training, evaluation and inference cut the same tiles.

>>> tile_boxes(1000, 600, 256, 32)[:2], len(tile_boxes(1000, 600, 256, 32))
([(0, 0, 256, 256), (224, 0, 480, 256)], 15)
>>> clip_boxes([(10, 10, 50, 50), (240, 0, 300, 40)], (0, 0, 256, 256))
([(10, 10, 50, 50)], [0])
"""

import math
import random

# A box is kept in a tile when the tile holds at least this share of its area, and dropped otherwise: a box cut
# to a sliver teaches nothing, and an object split by a tile edge is seen whole by a neighbouring tile whenever the
# overlap is larger than the object. Training may ask for whole objects only (1.0, `--tile_keep_area`): a cut box's
# edge lies on the tile's edge, so a quarter of the tiles' targets start at `<loc0000>`, and a model that cannot yet
# place objects learns to start every box at the tile's corner.
KEEP_AREA = 0.5
# A training tile is placed over a random object this often (else anywhere, so tiles without objects, which teach
# the model to say nothing, keep a share of the rows near what a sliced image holds).
OBJECT_TILE_SHARE = 0.75


def default_overlap(tile_size: int) -> int:
    """The overlap of a tile grid when none is asked for: 1/8 of a tile (an object up to that size lies whole in
    some tile)."""
    return tile_size // 8


def chosen_overlap(task, tile_size: int, asked: int | None = None) -> int:
    """The overlap of a grid of `tile_size` tiles: the one asked for, else the one `task` was evaluated with when it
    was trained at this tile size (`tile_overlap` in its record), else `default_overlap`."""
    if asked is not None:
        return asked
    recorded = getattr(task, "tile_overlap", None)
    return recorded if recorded is not None and tile_size == task.tile_size else default_overlap(tile_size)


def tile_starts(side: int, tile_size: int, overlap: int) -> list[int]:
    """Where tiles start along one side: every `tile_size - overlap` pixels, the last moved back to end at the edge;
    one tile at 0 when the side is no longer than a tile."""
    if not 0 <= overlap < tile_size:
        raise ValueError(f"overlap {overlap} must be at least 0 and below the tile size {tile_size}.")
    if side <= tile_size:
        return [0]
    positions = list(range(0, side - tile_size + 1, tile_size - overlap))
    return positions if positions[-1] + tile_size >= side else [*positions, side - tile_size]


def tile_boxes(width: int, height: int, tile_size: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """The (x1, y1, x2, y2) tiles covering a `width` x `height` image, row by row; a side shorter than a tile is
    whole (an image smaller than a tile is one tile)."""
    return [
        (x, y, x + min(tile_size, width), y + min(tile_size, height))
        for y in tile_starts(height, tile_size, overlap)
        for x in tile_starts(width, tile_size, overlap)
    ]


def random_tile(
    width: int, height: int, tile_size: int, boxes, rng: random.Random, whole: bool = False
) -> tuple[int, int, int, int]:
    """A training tile: over a random box (its centre inside the tile; with `whole`, the whole box when it fits)
    with probability OBJECT_TILE_SHARE, else anywhere; whole along a side shorter than a tile."""

    def start(side: int, low: float, high: float) -> int:
        if side <= tile_size:
            return 0
        low, high = max(0, int(low)), min(side - tile_size, int(high))
        return rng.randint(low, high) if low <= high else rng.randint(0, side - tile_size)

    if boxes and rng.random() < OBJECT_TILE_SHARE:
        x1, y1, x2, y2 = rng.choice(list(boxes))
        centre_x, centre_y = (x1 + x2) / 2, (y1 + y2) / 2
        if whole and x2 - x1 <= tile_size and y2 - y1 <= tile_size:
            x, y = start(width, math.ceil(x2) - tile_size, x1), start(height, math.ceil(y2) - tile_size, y1)
        else:
            x = start(width, centre_x - tile_size + 1, centre_x)
            y = start(height, centre_y - tile_size + 1, centre_y)
    else:
        x, y = start(width, 0, width), start(height, 0, height)
    return x, y, x + min(tile_size, width), y + min(tile_size, height)


def clip_boxes(boxes, tile, keep_area: float = KEEP_AREA) -> tuple[list[tuple[float, ...]], list[int]]:
    """(the boxes clipped to `tile` in the tile's own pixels, the indices of the boxes kept): a box is kept when at
    least `keep_area` of its area lies inside the tile."""
    tx1, ty1, tx2, ty2 = tile
    clipped, kept = [], []
    for index, (x1, y1, x2, y2) in enumerate(boxes):
        cx1, cy1, cx2, cy2 = max(x1, tx1), max(y1, ty1), min(x2, tx2), min(y2, ty2)
        area = (x2 - x1) * (y2 - y1)
        if cx2 <= cx1 or cy2 <= cy1 or area <= 0 or (cx2 - cx1) * (cy2 - cy1) < keep_area * area:
            continue
        clipped.append((cx1 - tx1, cy1 - ty1, cx2 - tx1, cy2 - ty1))
        kept.append(index)
    return clipped, kept


def to_image_box(box, tile) -> list[float]:
    """A box in a tile's pixels moved to the image's."""
    x, y = tile[0], tile[1]
    return [box[0] + x, box[1] + y, box[2] + x, box[3] + y]
