// The per-track zone rules (entered / left with inertia, dwell, lines crossed) on the host, in C++:
// the state machine python/segpost/zones/rules.py's numpy twin (_NumpyRules) also runs, moved here
// because a round's Python/numpy steps cost ~0.7 ms of host time against issue 33's 0.3 ms goal.
// Counts, overcrowding and the event objects stay in Python (they only change on flips).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace segpost {

// What a camera's zone / line slots are: flat [cameras * slots] tables (padded slots invalid).
struct ZoneRulesConfig {
  int cameras = 0;
  int slots = 1;
  std::vector<uint8_t> valid, is_line;
  std::vector<int32_t> col, col2;         // the slot's region (a line: its inward strip) and a line's outward strip
  std::vector<float> min_overlap;
  std::vector<int32_t> inertia;
  std::vector<double> dwell;              // +inf: no dwell
};

enum ZoneRuleEventKind : int32_t { kZoneFlip = 0, kLineCrossed = 1, kZoneDwell = 2, kZoneEnded = 3 };

struct ZoneRuleEvent {
  int32_t kind;      // ZoneRuleEventKind
  int32_t camera;
  int32_t slot;
  int32_t cls;       // class index (add_class order)
  int64_t track;
  int32_t value;     // flip: 1 entered / 0 left; line: +1 in / -1 out
  int64_t frame;
  double time;
  double seconds;    // dwell: time inside
};

class ZoneRules {
 public:
  explicit ZoneRules(ZoneRulesConfig config);
  // A class's [cameras * slots] table of which slots count it; returns its index.
  int add_class(const std::vector<uint8_t>& allowed);
  int num_classes() const { return static_cast<int>(allowed_.size()); }
  // One camera's frame of a round: n detections (track < 0: ignored; confirmed_only: those of tracks
  // not confirm()ed too), shares [n, columns] row-major.
  // Flips and dwells are kept apart until take_events, which returns a round's flips (detection, then
  // slot order) followed by its dwells, as the numpy twin orders them.
  void update(int camera, int64_t frame, double time, int n, const int32_t* cls, const int64_t* track,
              const float* shares, int columns, bool confirmed_only = false);
  // A pipeline's whole round in one call (the Python loop over cameras and classes cost more than
  // the rules). F frames in batch order, K classes; class k's compacted rows hold its frames'
  // detections in batch order, counts[k * F + f] each: their track ids tracks[k * track_stride + row],
  // their shares shares[(k * share_rows + row) * columns + column]. camera[f]: the rules' camera of
  // frame f (-1: no zones there); klass[k]: the rules' class of class k. Each frame's detections go
  // class by class, as update() of their concatenation. confirmed_only: a track counts once confirm()ed.
  void update_batch(int frames, const int32_t* camera, const int64_t* frame, const double* time, int classes,
                    const int32_t* klass, const int32_t* counts, const int64_t* tracks, int track_stride,
                    const float* shares, int share_rows, int columns, bool confirmed_only);
  // The tracker confirmed a track: with confirmed_only, its detections count from now on, until
  // end_track (a track dropped before confirmation gets no end: it must never be inside a zone).
  void confirm(int camera, int64_t track);
  std::vector<ZoneRuleEvent> take_events();
  // The tracker ended a track: kZoneEnded per zone each of its rows (one per class, in the order
  // they were first seen) is inside, at the row's last seen frame; the rows are freed.
  std::vector<ZoneRuleEvent> end_track(int camera, int64_t track);
  // (camera, track) of every track with a row, each once, in no particular order (leave_all's list).
  std::vector<std::pair<int32_t, int64_t>> live_tracks() const;
  size_t live_rows() const { return rows_.size(); }

 private:
  struct Key {
    int32_t camera;
    int32_t cls;
    int64_t track;
    bool operator==(const Key& o) const { return camera == o.camera && cls == o.cls && track == o.track; }
  };
  struct KeyHash {
    size_t operator()(const Key& k) const {
      return std::hash<int64_t>()(k.track * 1000003 + (static_cast<int64_t>(k.camera) << 20) + k.cls);
    }
  };
  struct Row {
    int32_t index;
    uint64_t seq;     // when the key was (re)inserted: end_track's order, as a Python dict's
  };
  int32_t row(const Key& key);
  void check_camera(int camera, const char* where) const;
  bool counted(int camera, int64_t track, bool confirmed_only) const {
    return track >= 0 && (!confirmed_only || confirmed_[camera].count(track) != 0);
  }
  void update_one(int camera, int64_t frame, double time, int32_t cls, int64_t track, const float* shares,
                  int columns);

  ZoneRulesConfig c_;
  std::vector<std::vector<uint8_t>> allowed_;
  std::unordered_map<Key, Row, KeyHash> rows_;
  std::vector<int32_t> free_;
  uint64_t seq_ = 0;
  // per row x slot
  std::vector<int8_t> state_, pending_;
  std::vector<int32_t> streak_;
  std::vector<int64_t> streak_frame_;
  std::vector<double> streak_time_, since_time_;
  std::vector<uint8_t> dwelled_;
  // per row
  std::vector<int64_t> last_frame_;
  std::vector<double> last_time_;
  std::vector<ZoneRuleEvent> flips_, dwells_;
  std::vector<std::unordered_set<int64_t>> confirmed_;  // per camera
  std::vector<int32_t> batch_start_;                     // update_batch's next row per class
};

}  // namespace segpost
