"""The tracker reads a class-batch through the Postprocessor's RoundView alone
(csrc/postprocess/round_view.h), on the CPU twin: the view names the batch it was given and the
result block's records, and a tracker fed views, with nothing else of the Postprocessor, tracks."""
import ctypes

import numpy as np

import segpost
from segpost import TrackerConfig
from track_cases import FRAME, MASK, QUERIES, Rig, disc_mask, engine_outputs


class ViewOnly:
    """What the tracker may read of a Postprocessor: its round_view(), nothing else."""

    def __init__(self, post):
        self.round_view = post.round_view


def block(address: int, offset: int, count: int, dtype) -> np.ndarray:
    """`count` values of `dtype` at byte `offset` of the result block at `address` (a copy)."""
    size = np.dtype(dtype).itemsize * count
    return np.frombuffer((ctypes.c_char * size).from_address(address + offset), dtype).copy()


def test_the_view_names_the_batch_and_its_records():
    post = segpost.Postprocessor(max_frames=2, num_queries=QUERIES, mask_size=MASK, capacity=8, max_frame_size=FRAME,
                                 score_threshold=0.05, device="cpu")
    frames = [[(3, disc_mask(20, 20, 8), 0.9), (7, disc_mask(44, 40, 6), 0.7)], [(11, disc_mask(30, 30, 9), 0.8)]]
    logits, boxes, masks = engine_outputs(frames)
    post.enqueue(logits, None, boxes, masks, [FRAME, (200, 300)])
    view = post.round_view()
    assert view.frame_sizes == [FRAME, (200, 300)]
    assert (view.masks, view.num_frames, view.num_queries, view.mask_size, view.capacity) == \
        (masks.ctypes.data, 2, QUERIES, MASK, 8)
    assert not view.use_cuda and view.device_results == 0
    result = post.result()
    # The records, read at the view's addresses and offsets, are the ones result() gave.
    layout, at = view.layout, view.host_results
    total, num_frames = block(at, layout["header"], 4, np.int32)[[0, 3]]
    assert (total, num_frames) == (3, 2)
    assert block(at, layout["frame"], 3, np.int32).tolist() == [0, 0, 1]
    assert block(at, layout["query"], 3, np.int32).tolist() == [q for f in result for q in f.query_ids.tolist()]
    np.testing.assert_array_equal(block(at, layout["score"], 3, np.float32), np.concatenate([f.scores for f in result]))
    np.testing.assert_array_equal(block(at, layout["box"], 12, np.float32).reshape(3, 4),
                                  np.concatenate([f.boxes for f in result]))


def test_a_tracker_fed_only_views_tracks_every_camera():
    """Two cameras (frame 1's masks start num_queries maps after frame 0's), objects standing
    still: every detection keeps its id, and its mask matches its track's exactly."""
    rig = Rig(TrackerConfig(min_hits=1), classes=2, cameras=2)
    scene = [[{"a": disc_mask(16, 16, 7), "b": disc_mask(44, 40, 6)}, {"c": disc_mask(30, 20, 8)}],   # camera 0
             [{"d": disc_mask(40, 24, 5)}, {"e": disc_mask(12, 44, 9), "f": disc_mask(48, 12, 6)}]]   # camera 1
    rng = np.random.default_rng(3)
    first = None
    for t in range(4):
        slots = {}
        for c, post in enumerate(rig.posts):
            frames = []
            for f in range(2):
                order = rng.permutation(QUERIES)   # query slots are no identities
                frames.append([(int(order[i]), mask, 0.9) for i, mask in enumerate(scene[f][c].values())])
                slots.update({(f, c, int(order[i])): name for i, name in enumerate(scene[f][c])})
            logits, boxes, masks = engine_outputs(frames)
            post.enqueue(logits, None, boxes, masks, [FRAME, FRAME], class_id=c)
            rig.tracker.enqueue(c, ViewOnly(post), masks, [0, 1])
        results = [post.result() for post in rig.posts]
        ids, _ = rig.tracker.update([ViewOnly(p) for p in rig.posts], [t, t], [FRAME, FRAME])
        named, best_iou = {}, []
        for c, result in enumerate(results):
            start = 0
            for f, frame in enumerate(result):
                for k in range(len(frame)):
                    named[slots[(f, c, int(frame.query_ids[k]))]] = int(ids[c, start + k])
                    best_iou.append(float(rig.tracker.mask_iou()[c, start + k].max()))
                start += len(frame)
        assert sorted(named) == list("abcdef")
        if first is None:
            first = named
        else:
            assert named == first, t
            assert min(best_iou) > 0.99, (t, best_iou)
