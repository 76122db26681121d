// The tracker's host side: every camera's tracks (a fixed pool of slots), their Kalman boxes,
// ByteTrack's two-stage association on fused box + mask IoU, the lifecycle and its events.
// Shared by the GPU and CPU paths: only the mask IoU matrix comes from a kernel or its twin.
#pragma once

#include <cstdint>
#include <vector>

#include "assignment.h"
#include "kalman.h"
#include "mask_iou.h"

namespace segpost {

struct TrackerConfig {
  int32_t max_cameras = 8;
  int32_t num_classes = 1;
  int32_t capacity = 128;   // detections per class-batch (the Postprocessors' capacity)
  int32_t mask_h = 288;
  int32_t mask_w = 288;
  int32_t max_tracks = 64;  // slots per camera, shared by its classes
  int32_t max_age = 30;     // frames a lost track is kept
  int32_t min_hits = 3;     // matched frames that confirm a track
  float high_score = 0.5f;  // first-stage detections; lower ones only continue confirmed or lost tracks
  float match_threshold = 0.1f;   // least similarity of a match
  float mask_weight = 0.5f;       // similarity = (1 - w) box IoU + w mask IoU
  float new_track_score = 0.6f;   // least score of a detection that starts a track
  bool use_cuda = false;
};

// Throws std::invalid_argument naming the bad field.
TrackerConfig validated(const TrackerConfig& config);

enum class TrackEventKind : int32_t { Started = 0, Ended = 1 };

struct TrackEvent {
  TrackEventKind kind;
  int32_t camera;
  int32_t class_id;
  int64_t track_id;
  int64_t first_frame;
  int64_t last_frame;
  int64_t frames_seen;
};

// One class's detections of one camera frame: records first .. first + count - 1 of the class's
// result block, and the class's mask IoU matrix [capacity][max_tracks].
struct FrameDetections {
  const float* boxes;   // [capacity, 4] xyxy pixels
  const float* scores;  // [capacity]
  int32_t first;
  int32_t count;
  const float* mask_iou;
};

class TrackTable {
 public:
  explicit TrackTable(const TrackerConfig& config);

  // One camera's frame: predict its tracks, match each class's detections, age the unmatched,
  // start tracks. ids: [classes][capacity], written for the frame's records (-1: untracked).
  void camera_frame(int32_t camera, int64_t frame_id, int32_t width, int32_t height,
                    const std::vector<FrameDetections>& classes,
                    int64_t* ids, std::vector<TrackEvent>& events);
  // Every slot's plan for the pool refresh; the masks to copy are those of the last camera_frame
  // calls (each slot's copy is planned once).
  void write_plan(SlotPlan* plan);
  // Ends every live track of `camera` (-1: of all cameras); confirmed or lost ones give events.
  void finish(int32_t camera, std::vector<TrackEvent>& events);
  void set_next_id(int32_t camera, int64_t next_id);
  int64_t next_id(int32_t camera) const { return next_id_[camera]; }
  int64_t refused(int32_t camera) const { return refused_[camera]; }
  int32_t live(int32_t camera) const;
  int64_t host_bytes() const;

 private:
  enum class State : int8_t { Free, Tentative, Confirmed, Lost };
  struct Track {
    State state = State::Free;
    int32_t class_id = -1;
    int64_t id = -1;
    int64_t first_frame = 0, last_frame = 0, hits = 0;
    int32_t misses = 0;       // consecutive frames of its camera without a match
    bool matched = false;     // in the current frame
    int32_t source_class = -1, source_k = -1;  // the detection whose mask the slot takes
    double mask_cx = 0, mask_cy = 0;            // the filter's centre when the slot's mask was taken
    int32_t dx = 0, dy = 0;                     // mask shift for the camera's next frame
    BoxKalman kalman;
  };

  Track& slot(int32_t camera, int32_t s) { return tracks_[static_cast<size_t>(camera) * config_.max_tracks + s]; }
  void match_stage(int32_t camera, const FrameDetections& d, int32_t class_id, bool high, int64_t frame_id,
                   int64_t* ids, std::vector<TrackEvent>& events);
  // After the IoU stages, when frames were skipped (gap > 1): unmatched detections and tracks of a
  // class, nearest centres first, within the distance the object can go in `gap` frames.
  void gap_stage(int32_t camera, const FrameDetections& d, int32_t class_id, int64_t gap, int64_t frame_id,
                 int64_t* ids, std::vector<TrackEvent>& events);
  void apply_match(Track& t, int32_t camera, int32_t class_id, int32_t k, const float* box, float score,
                   int64_t frame_id, std::vector<TrackEvent>& events);
  void start_track(int32_t camera, int32_t class_id, int32_t k, const float* box, int64_t frame_id, int64_t* ids,
                   std::vector<TrackEvent>& events);
  void end_track(Track& t, int32_t camera, std::vector<TrackEvent>& events);
  // take_detection, then the hit counted: confirmed after min_hits (track_started), found again if lost.
  void count_hit(Track& t, int32_t camera, int32_t class_id, int32_t k, int64_t frame_id,
                 std::vector<TrackEvent>& events);
  // Track t takes detection k (its frame, its mask) once its filter took the box.
  static void take_detection(Track& t, int32_t class_id, int32_t k, int64_t frame_id);

  TrackerConfig config_;
  std::vector<Track> tracks_;  // [cameras][max_tracks]
  std::vector<int64_t> next_id_, refused_;
  // Per camera: its last frame's id (-1: none yet) and the gap to it, in camera frames. The filters
  // step once per camera frame, so a camera the model sees every 3rd frame (on_change) predicts
  // 3 steps, not one (its velocity stays per camera frame whatever the gaps).
  std::vector<int64_t> last_frame_id_, last_gap_;
  // Association scratch, sized once.
  std::vector<int32_t> rows_, cols_, row_to_col_;
  std::vector<double> cost_;
  Assignment assignment_;
};

}  // namespace segpost
