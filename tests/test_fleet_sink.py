"""The fleet's sink without Ray: exactly once per (camera, frame), durable state recovered from the
files' ends (torn lines cut, retried batches recognised, track ids resumed), read backwards only."""
import json
import os
import zlib

import pytest

from segpost.fleet import sink as sink_module
from segpost.io import recovery
from segpost.fleet.sink import RecordSink, shard_of


def frame(camera, index, tracks=(), detections=1):
    dets = [{"class": "person", "score": 0.9, "box": [0, 0, 1, 1]} for _ in range(detections)]
    for det, track in zip(dets, tracks):
        det["track_id"] = track
    return {"round": index, "camera": camera, "source": f"{camera}.mp4", "frame_index": index, "detections": dets}


def event(camera, kind, **details):
    return {"event": kind, "camera": camera, "source": f"{camera}.mp4", "message": kind, **details}


def lines(folder, camera):
    with open(os.path.join(folder, f"{camera}.jsonl")) as f:
        text = f.read()
    assert not text or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def frames_of(folder, camera):
    return [r["frame_index"] for r in lines(folder, camera) if "detections" in r]


def test_every_frame_once_in_order_and_the_state_survives_a_new_sink(tmp_path):
    out = str(tmp_path / "out")
    sink = RecordSink(out, cameras=["a", "b"])
    assert sink.write_batch([frame("a", 0), frame("b", 0), event("a", "reconnected")]) == 3
    assert sink.write_batch([frame("a", 1), frame("a", 0), frame("b", 1)]) == 2      # a 0 again: a duplicate
    assert sink.write_batch([{**frame("b", 1), "round": 9}]) == 0                  # re-processed frame: dropped
    assert sink.stats()["duplicates_dropped"] == 2 and sink.committed() == {"a": 1, "b": 1}
    # No close: as if the sink's process died. A new one reads where each camera ends.
    again = RecordSink(out, cameras=["a", "b"])
    state = again.committed_state()
    assert state["a"]["last_frame"] == 1 and state["b"]["last_frame"] == 1 and not state["a"]["finished"]
    assert again.write_batch([{**frame("a", 1), "round": 5}, frame("a", 2), event("a", "finished", frames=3)]) == 2
    assert again.committed_state()["a"]["finished"] and again.stats()["duplicates_dropped"] == 1
    again.close()
    assert frames_of(out, "a") == [0, 1, 2] and frames_of(out, "b") == [0, 1]
    assert [r.get("event") for r in lines(out, "a")] == [None, "reconnected", None, None, "finished"]


def test_a_batch_retried_after_the_sink_died_is_not_written_twice(tmp_path):
    """Ray re-sends the call that the sink's death interrupted: whether it was written fully,
    partly (a torn last line) or not at all, the files end up with each line once."""
    out = str(tmp_path / "out")
    sink = RecordSink(out, cameras=["a", "b"])
    sink.write_batch([frame("a", 0), frame("b", 0)])
    batch = [event("a", "disconnected", time=1.5), frame("a", 1), event("a", "reconnected", time=2.5),
             event("b", "error", time=3.5)]
    sink.write_batch(batch)                                     # written, then the sink died before answering
    retried = RecordSink(out, cameras=["a", "b"])
    assert retried.write_batch(batch) == 0 and retried.stats()["repeated_lines_skipped"] == 4
    # Written partly: the last line torn by the death (cut at start-up), the rest of it re-sent.
    with open(os.path.join(out, "a.jsonl"), "a") as f:
        f.write(json.dumps(event("a", "disconnected", time=4.5), separators=(",", ":")) + "\n")
        f.write('{"round": 2, "camera": "a", "frame_in')
    partial = RecordSink(out, cameras=["a", "b"])
    assert partial.stats()["torn_bytes_cut"] > 0
    assert partial.write_batch([event("a", "disconnected", time=4.5), frame("a", 2), event("b", "error", time=5)]) == 2
    partial.close()
    kinds = [r.get("event") or r["frame_index"] for r in lines(out, "a")]
    assert kinds == [0, "disconnected", 1, "reconnected", "disconnected", 2]
    assert [r.get("event") or r["frame_index"] for r in lines(out, "b")] == [0, "error", "error"]


def test_track_ids_resume_after_the_largest_even_when_its_track_ended_long_ago(tmp_path, monkeypatch):
    out = str(tmp_path / "out")
    sink = RecordSink(out, cameras=["a", "plain"])
    sink.write_batch([event("a", "track_started", track_id=0), frame("a", 0, tracks=[0])])
    sink.write_batch([event("a", "track_started", track_id=7), frame("a", 1, tracks=[0, 7])])
    sink.write_batch([event("a", "track_ended", track_id=7)])
    # Many frames later (more than a few read blocks), only the old track remains.
    sink.write_batch([frame("a", i, tracks=[0]) for i in range(2, 3000)] + [frame("plain", 0)])
    assert sink.committed_state()["a"]["next_track_id"] == 8
    sink.close()
    read = []
    real_pread = os.pread
    monkeypatch.setattr(recovery.os, "pread", lambda fd, n, at: read.append(n) or real_pread(fd, n, at))
    state = RecordSink(out, cameras=["a", "plain"]).committed_state()
    assert state["a"] == {**state["a"], "last_frame": 2999, "next_track_id": 8}
    assert state["plain"]["next_track_id"] == 0 and state["plain"]["last_frame"] == 0
    size = os.path.getsize(os.path.join(out, "a.jsonl"))
    assert sum(read) >= size          # the track scan went back to the track_started event...
    read.clear()
    # ... while with no tracker the scan stops at the last frame: one block of a large file.
    sink = RecordSink(out, cameras=["big"])
    sink.write_batch([frame("big", i) for i in range(5000)])
    sink.close()
    RecordSink(out, cameras=["big"])
    assert 0 < sum(read) <= 2 * recovery.BLOCK < os.path.getsize(os.path.join(out, "big.jsonl"))


def test_one_merged_file_recovers_every_camera(tmp_path):
    out = str(tmp_path / "all.jsonl")
    sink = RecordSink(out, per_camera=False, cameras=["a", "b", "c"])
    sink.write_batch([frame("a", 0), frame("b", 0), frame("a", 1), event("c", "error")])
    state = RecordSink(out, per_camera=False, cameras=["a", "b", "c"]).committed_state()
    assert (state["a"]["last_frame"], state["b"]["last_frame"], state["c"]["last_frame"]) == (1, 0, -1)
    assert state["c"]["last_time"] is not None


def test_a_failed_write_leaves_no_partial_line(tmp_path, monkeypatch):
    out = str(tmp_path / "out")
    sink = RecordSink(out, cameras=["a"])
    sink.write_batch([frame("a", 0)])
    real_write = os.write

    def disk_full(fd, data):
        real_write(fd, bytes(data[:10]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sink_module.os, "write", disk_full)
    with pytest.raises(OSError):
        sink.write_batch([frame("a", 1), frame("a", 2)])
    monkeypatch.setattr(sink_module.os, "write", real_write)
    assert sink.committed() == {"a": 0}
    assert sink.write_batch([frame("a", 1), frame("a", 2)]) == 2
    sink.close()
    assert frames_of(out, "a") == [0, 1, 2]


def test_shards_are_a_stable_hash_of_the_camera_name():
    assert shard_of("dock-1", 4) == zlib.crc32(b"dock-1") % 4 == 2
    assert shard_of(None, 4) == 0
    assert {shard_of(f"cam{i}", 4) for i in range(40)} == {0, 1, 2, 3}


def started(camera, track_id, first, at, seen, cls="person"):
    return {"event": "track_started", "camera": camera, "source": f"{camera}.mp4", "class": cls,
            "track_id": track_id, "first_frame": first, "last_frame": at, "frames_seen": seen}


def test_the_tracks_a_dead_worker_left_open_end_where_its_output_did_once(tmp_path):
    """Track 1 ended by its worker; tracks 2 (seen again after its start) and 3 (on another camera's
    file, not asked) open: only 2 gets a track_ended, with what the sink wrote of it, once."""
    out = str(tmp_path / "out")
    sink = RecordSink(out, cameras=["a", "b"])
    sink.write_batch([frame("a", 0, tracks=[1, 2], detections=2), frame("a", 1, tracks=[1, 2], detections=2),
                      started("a", 1, 0, 1, 2), started("a", 2, 0, 1, 2, cls="hand"),
                      frame("b", 0, tracks=[3]), started("b", 3, 0, 0, 1)])
    sink.write_batch([frame("a", 2, tracks=[2]), frame("a", 3, tracks=[-1]), frame("a", 4, tracks=[2, 7], detections=2),
                      {**started("a", 1, 0, 2, 3), "event": "track_ended"}])
    before = sink.committed_state()["a"]
    assert sink.end_open_tracks(["a", "nobody"], "worker lost") == 1
    assert sink.end_open_tracks(["a"], "worker lost") == 0                  # asked again: nothing is open
    ends = [r for r in lines(out, "a") if r.get("event") == "track_ended"]
    assert [(e["track_id"], e.get("reason")) for e in ends] == [(1, None), (2, "worker lost")]
    assert {k: ends[1][k] for k in ("class", "first_frame", "last_frame", "frames_seen", "source")} == \
        {"class": "hand", "first_frame": 0, "last_frame": 4, "frames_seen": 4, "source": "a.mp4"}
    after = sink.committed_state()["a"]                                     # not a frame: the camera resumes as before
    assert after == before
    assert sink.end_open_tracks(["b"], "worker lost") == 1
    sink.close()
    assert [r["track_id"] for r in lines(out, "b") if r.get("event") == "track_ended"] == [3]


def test_track_ids_resume_after_tentative_ids_written_before_the_newest_track_started(tmp_path):
    """The runner writes a round's frame record, then that round's events: ids handed out to
    tentative tracks (2, 3) appear in detections before the newest track_started (1) and never
    after it. A recovered sink must resume after 3, as the running one does."""
    out = str(tmp_path / "out")
    sink = RecordSink(out, cameras=["a"])
    sink.write_batch([frame("a", 0, tracks=[1])])
    sink.write_batch([frame("a", 1, tracks=[1, 2], detections=2)])
    sink.write_batch([frame("a", 2, tracks=[1, 3], detections=2), started("a", 1, 0, 2, 3)])
    sink.write_batch([frame("a", i, tracks=[1]) for i in range(3, 60)])
    assert sink.committed_state()["a"]["next_track_id"] == 4
    sink.close()
    assert RecordSink(out, cameras=["a"]).committed_state()["a"]["next_track_id"] == 4
    # The issue's case: ids [1, 2] in the frame, then track 1's start.
    out = str(tmp_path / "two")
    sink = RecordSink(out, cameras=["a"])
    sink.write_batch([frame("a", 0, tracks=[1, 2], detections=2), started("a", 1, 0, 0, 1)])
    assert sink.committed_state()["a"]["next_track_id"] == 3
    sink.close()
    assert RecordSink(out, cameras=["a"]).committed_state()["a"]["next_track_id"] == 3


def test_a_tracked_file_camera_is_finished_though_its_track_ends_follow(tmp_path):
    """The runner ends a file camera's tracks with its "finished" event; lines after "finished"
    that are not frames (its tracks' ends) leave the camera finished, for the running sink and
    for a recovered one, so a restarted fleet does not decode it again."""
    out = str(tmp_path / "out")
    sink = RecordSink(out, cameras=["a", "b"])
    sink.write_batch([frame("a", 0, tracks=[1]), frame("a", 1, tracks=[1]), started("a", 1, 0, 1, 2),
                      event("a", "finished", frames=2), {**started("a", 1, 0, 1, 2), "event": "track_ended"},
                      frame("b", 0, tracks=[4]), started("b", 4, 0, 0, 1), event("b", "reconnected")])
    assert sink.committed_state()["a"]["finished"] and not sink.committed_state()["b"]["finished"]
    sink.close()
    state = RecordSink(out, cameras=["a", "b"]).committed_state()
    assert state["a"]["finished"] and not state["b"]["finished"]


def test_a_write_that_fails_on_the_second_file_writes_neither(tmp_path, monkeypatch):
    """A full disk on camera b's file after camera a's lines went to disk: the batch is all or
    nothing, so the batch re-sent by the replacement worker is written once."""
    out = str(tmp_path / "out")
    sink = RecordSink(out, cameras=["a", "b"])
    sink.write_batch([frame("a", 0), frame("b", 0)])
    b_path = os.path.join(out, "b.jsonl")
    b_fd = sink._fd(b_path)
    real_write = os.write

    def b_full(fd, data):
        if fd == b_fd:
            raise OSError(27, "File too large")
        return real_write(fd, data)

    monkeypatch.setattr(sink_module.os, "write", b_full)
    batch = [frame("a", 1), frame("b", 1)]
    with pytest.raises(OSError):
        sink.write_batch(batch)
    monkeypatch.setattr(sink_module.os, "write", real_write)
    assert sink.committed() == {"a": 0, "b": 0}
    assert frames_of(out, "a") == [0]
    assert sink.write_batch(batch) == 2
    sink.close()
    assert frames_of(out, "a") == [0, 1] and frames_of(out, "b") == [0, 1]


def test_a_new_sink_ends_the_tracks_its_files_left_open(tmp_path):
    """A sink restarted by Ray, or by a restarted segpost fleet, finds the tracks its files
    started and never ended (read whole once), for its own cameras only, and ends each once."""
    out = str(tmp_path / "out.jsonl")
    sink = RecordSink(out, per_camera=False, cameras=["a", "b"])
    sink.write_batch([frame("a", 0, tracks=[1, 2], detections=2), started("a", 1, 0, 0, 1), started("a", 2, 0, 0, 1),
                      frame("b", 0, tracks=[5]), started("b", 5, 0, 0, 1),
                      frame("a", 1, tracks=[2]), {**started("a", 1, 0, 0, 1), "event": "track_ended"}])
    # No close, no end_open_tracks: the fleet died. Shard "a" alone comes back first.
    again = RecordSink(out, per_camera=False, cameras=["a"])
    assert again.end_open_tracks(["a", "b"], "worker lost") == 1            # b is another shard's
    assert again.end_open_tracks(["a"], "worker lost") == 0
    again.close()
    with open(out) as f:
        ends = [json.loads(line) for line in f if '"track_ended"' in line]
    assert [(e["camera"], e["track_id"], e.get("reason"), e["last_frame"], e["frames_seen"]) for e in ends] == \
        [("a", 1, None, 0, 1), ("a", 2, "worker lost", 1, 2)]
