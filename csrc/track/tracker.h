// The tracker: identities across frames for every camera and class of a pipeline, on the
// compacted results, in constant memory. Per class-batch, right after Postprocessor::enqueue on
// the same stream (pred_masks is still intact then), the tracker reads the batch's RoundView
// (postprocess/round_view.h: the Postprocessor's results as a named contract, nothing else of
// it), and each kept detection's low-res map is packed
// into bits and compared with every live track of its camera and class (mask IoU, mask_iou.h);
// the IoU matrix goes to pinned memory on that stream. Once per round, after the one wait,
// update() associates on the host (tracks.h), then refreshes the track pool on the device.
// Every buffer is allocated here, once.
#pragma once

#include <cstdint>
#include <vector>

#include "postprocess/round_view.h"
#include "tracks.h"

namespace segpost {

class Tracker {
 public:
  explicit Tracker(const TrackerConfig& config);
  ~Tracker();
  Tracker(const Tracker&) = delete;
  Tracker& operator=(const Tracker&) = delete;

  // GPU: class `class_id`'s batch, right after post.enqueue() on `stream`, given as
  // post.round_view(); `masks` must be the view's pred_masks (the array the caller gave both, a
  // check of the caller); frame f of the batch is camera cameras[f].
  void enqueue(int32_t class_id, const RoundView& view, const void* masks, DType masks_dtype,
               const std::vector<int32_t>& cameras, uintptr_t stream);
  // CPU twin: the same after post.run_cpu(), on host memory.
  void run_cpu(int32_t class_id, const RoundView& view, const void* masks, DType masks_dtype,
               const std::vector<int32_t>& cameras);
  // Once per round, after every class was enqueued (views: one per class, in class order, taken
  // once each Postprocessor synchronized): waits for the IoU matrices (GPU), matches, writes
  // track_ids() and events(), and queues the pool refresh on the round's stream. Frame f of the
  // round has frame_ids[f] and its size.
  void update(const std::vector<RoundView>& views, const std::vector<int64_t>& frame_ids,
              const std::vector<int32_t>& heights, const std::vector<int32_t>& widths);
  const std::vector<TrackEvent>& events() const { return events_; }
  std::vector<TrackEvent> finish(int32_t camera);  // -1: every camera
  // Forgets the classes enqueued since the last update() (a round that failed part-way): waits
  // for their queued work, leaves the tracks as they were, and lets the next round start.
  void abandon_round();

  TrackTable& table() { return table_; }
  const TrackerConfig& config() const { return config_; }
  const int64_t* track_ids() const { return track_ids_.data(); }  // [classes][capacity]
  const float* mask_iou() const { return host_iou_; }             // [classes][capacity][max_tracks]
  const SlotPlan* slot_plan() const { return host_plan_; }         // the last update's, [cameras][max_tracks]
  // The last enqueued classes' packed masks and MaskMeta, [classes][capacity] (device memory on
  // CUDA): read by ops that follow on the round's stream (zones/zone_masks.h).
  const uint32_t* packed_masks() const { return det_packed_; }
  const MaskMeta* mask_meta() const { return det_meta_; }
  int64_t device_bytes() const { return device_bytes_; }
  int64_t pinned_bytes() const { return pinned_bytes_; }
  int64_t host_bytes() const;

 private:
  bool round_open() const;  // a class of this round was enqueued already
  PackParams begin_class(int32_t class_id, const RoundView& view, const void* masks, DType masks_dtype,
                         const std::vector<int32_t>& cameras, bool on_device);
  FrameCameras frame_cameras() const;
  int64_t slots() const { return static_cast<int64_t>(config_.max_cameras) * config_.max_tracks; }
  void allocate_cuda();
  void release_cuda();

  TrackerConfig config_;
  PoolGeometry geometry_;
  TrackTable table_;
  std::vector<int64_t> track_ids_;
  std::vector<TrackEvent> events_;
  // The round in progress: the classes enqueued and the cameras of their frames.
  std::vector<char> enqueued_;
  std::vector<int32_t> round_cameras_;
  uintptr_t round_stream_ = 0;
  // update() scratch, one entry per class.
  std::vector<Records> records_;
  std::vector<FrameDetections> detections_;
  std::vector<int32_t> firsts_;
  int64_t device_bytes_ = 0, pinned_bytes_ = 0;
  int device_ = -1;

  // Buffers: device memory (GPU) or the host vectors below (CPU twin).
  uint32_t* det_packed_ = nullptr;  // [classes][capacity][mask_words]
  MaskMeta* det_meta_ = nullptr;    // [classes][capacity]
  uint32_t* pool_ = nullptr;        // [cameras][max_tracks][mask_words]
  MaskMeta* pool_meta_ = nullptr;   // [cameras][max_tracks]
  SlotState* slot_states_ = nullptr;
  SlotPlan* plan_ = nullptr;        // device copy of host_plan_ (GPU)
  float* iou_ = nullptr;            // [classes][capacity][max_tracks], device (GPU)
  float* host_iou_ = nullptr;       // pinned (GPU) or host
  SlotPlan* host_plan_ = nullptr;   // pinned (GPU) or host
  std::vector<uint32_t> cpu_words_;
  std::vector<MaskMeta> cpu_meta_;
  std::vector<SlotState> cpu_slots_;
  std::vector<SlotPlan> cpu_plan_;
  std::vector<float> cpu_iou_;
  void* iou_ready_ = nullptr;  // cudaEvent_t after the round's IoU copies
  void* planned_ = nullptr;    // cudaEvent_t after the plan's upload
};

}  // namespace segpost
