"""The boxes that overlapping tiles write, merged into one set for the image or scene they cover.

Tiles overlap, so an object is seen more than once, in two ways:
- **whole in two tiles**: two nearly equal boxes. Per-class NMS at IoU NMS_IOU keeps the higher-scored one.
- **cut by a tile edge**: each tile holding at least `tiling.KEEP_AREA` of it writes the part inside it (the model
  was trained on boxes clipped to the tile). A part keeps at least half of the object, so when some tile sees the
  object whole, NMS already removes the part (IoU >= 0.5). When no tile sees it whole, the parts overlap only in the
  tiles' shared strip, their IoU is low and NMS keeps both: one object counted twice, neither box right. As SAHI's
  greedy merging does, such boxes become one box, their union, when they are of one class, from different tiles,
  their intersection over the smaller box (IoS) is at least MERGE_IOS, and each ends at an edge of its own tile
  (within EDGE_TOLERANCE of the tile's side: the mark of a cut). A box inside its tile is never merged: the union
  of a right box with a wrong part would spoil the right one. Nor are boxes of one tile: the model wrote them as
  different objects.

>>> left = {"label": "ship", "box": [100, 10, 128, 40], "score": 0.9}  # its tile ends at x = 128
>>> right = {"label": "ship", "box": [112, 10, 160, 40], "score": 0.6}  # its tile starts at x = 112
>>> merge_boxes([left, right], tiles=[(0, 0, 128, 128), (112, 0, 240, 128)])
[{'label': 'ship', 'box': [100.0, 10.0, 160.0, 40.0], 'score': 0.9}]
"""

import numpy as np

NMS_IOU = 0.5
MERGE_IOS = 0.5
EDGE_TOLERANCE = 0.01  # a box ends at its tile's edge when it is this share of the tile's side from it, or closer


def intersection_over_smaller(boxes: np.ndarray, box) -> np.ndarray:
    """(N,): the area of each (x1, y1, x2, y2) row of `boxes` intersected with `box`, over the smaller of the two
    areas (0 where either is empty)."""
    box = np.asarray(box, dtype=np.float64)
    width = np.minimum(boxes[:, 2], box[2]) - np.maximum(boxes[:, 0], box[0])
    height = np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 1], box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    smaller = np.minimum(areas, (box[2] - box[0]) * (box[3] - box[1]))
    overlap = np.clip(width, 0, None) * np.clip(height, 0, None)
    return np.divide(overlap, smaller, out=np.zeros_like(overlap), where=smaller > 0)


def cut_by_its_tile(box, tile) -> bool:
    """Whether the (x1, y1, x2, y2) box ends at an edge of its (x1, y1, x2, y2) tile, within EDGE_TOLERANCE."""
    near_x = EDGE_TOLERANCE * (tile[2] - tile[0])
    near_y = EDGE_TOLERANCE * (tile[3] - tile[1])
    return (
        box[0] - tile[0] <= near_x
        or tile[2] - box[2] <= near_x
        or box[1] - tile[1] <= near_y
        or tile[3] - box[3] <= near_y
    )


def nms_kept(boxes: list[dict]) -> list[int]:
    """The indices, in order, that torchvision's per-class `batched_nms` at IoU NMS_IOU keeps (score: 1 if none)."""
    import torch
    from torchvision.ops import batched_nms

    names = sorted({item["label"] for item in boxes})
    keep = batched_nms(
        torch.tensor([item["box"] for item in boxes], dtype=torch.float64),
        torch.tensor([item.get("score", 1.0) for item in boxes], dtype=torch.float64),
        torch.tensor([names.index(item["label"]) for item in boxes]),
        iou_threshold=NMS_IOU,
    )
    return sorted(keep.tolist())


def merge_parts(boxes: list[dict], tiles: list) -> list[dict]:
    """Greedy, by score, over the boxes cut by their tile (`cut_by_its_tile`; `tiles`: each box's tile box): each
    joins the first higher-scored group of its class that holds no box of its tile and whose box it overlaps by
    IoS >= MERGE_IOS (the group's box grows to their union), else starts a group; every other box is a group of its
    own. The groups come back in the order of their first box, with its label and score. Each box is compared with
    its class's groups at once (numpy), so a scene of thousands of boxes merges in a moment."""
    order = sorted(range(len(boxes)), key=lambda index: -boxes[index]["score"])
    cut = [cut_by_its_tile(item["box"], tile) for item, tile in zip(boxes, tiles)]
    tiles = [tuple(tile) for tile in tiles]
    room = {
        label: np.zeros((sum(item["label"] == label for item in boxes), 4)) for label in {b["label"] for b in boxes}
    }
    rows: dict[str, list[dict]] = {label: [] for label in room}  # each class's groups, row i of room[label]
    for index in order:
        item, tile = boxes[index], tiles[index]
        groups, held = rows[item["label"]], room[item["label"]]
        overlaps = intersection_over_smaller(held[: len(groups)], item["box"])
        joinable = [row for row in np.flatnonzero(overlaps >= MERGE_IOS) if cut[index] and groups[row]["cut"]]
        joined = next((row for row in joinable if tile not in groups[row]["tiles"]), None)
        if joined is None:
            held[len(groups)] = item["box"]
            groups.append({"first": index, "tiles": {tile}, "cut": cut[index]})
        else:
            held[joined, :2] = np.minimum(held[joined, :2], item["box"][:2])
            held[joined, 2:] = np.maximum(held[joined, 2:], item["box"][2:])
            groups[joined]["tiles"].add(tile)
    merged = {
        group["first"]: [float(value) for value in room[label][row]] if len(group["tiles"]) > 1 else None
        for label, groups in rows.items()
        for row, group in enumerate(groups)
    }
    return [{**boxes[first], "box": box or boxes[first]["box"]} for first, box in sorted(merged.items())]


def merge_boxes(boxes: list[dict], tiles: list | None = None) -> list[dict]:
    """{"label", "box", "score"} boxes (a box without a score scores 1) with the duplicates of overlapping tiles
    merged: NMS, then, given each box's tile ((x1, y1, x2, y2) in the boxes' pixels), the parts of cut objects
    (`merge_parts`)."""
    if not boxes:
        return []
    scored = [{**item, "score": item.get("score", 1.0)} for item in boxes]
    kept = nms_kept(scored)
    if tiles is None:
        return [scored[index] for index in kept]
    return merge_parts([scored[index] for index in kept], [tiles[index] for index in kept])
