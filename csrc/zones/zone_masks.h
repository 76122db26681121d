// ZoneMasks: each round, the share of every kept detection's mask inside every zone of its
// camera, from the Tracker's packed masks (zones.h). Zones are rasterised when they are set
// (set_zones, between rounds); a round is one kernel for every class on the round's stream,
// right after the last Tracker::enqueue, and one copy of the [classes][capacity][max_zones]
// overlaps into pinned memory on that stream: the host reads them after the round's one wait.
// Every buffer is allocated here, once.
#pragma once

#include <cstdint>
#include <vector>

#include "postprocess/round_view.h"
#include "track/tracker.h"
#include "zones.h"

namespace segpost {

struct ZoneMasksConfig {
  int32_t max_cameras = 8;
  int32_t num_classes = 1;
  int32_t capacity = 128;
  int32_t mask_h = 288, mask_w = 288;
  int32_t max_zones = 16;  // regions per camera (a line takes two)
  bool use_cuda = false;
};

class ZoneMasks {
 public:
  explicit ZoneMasks(const ZoneMasksConfig& config);
  ~ZoneMasks();
  ZoneMasks(const ZoneMasks&) = delete;
  ZoneMasks& operator=(const ZoneMasks&) = delete;

  // Camera `camera`'s zones (polygons[z]: its vertices, 3 .. kMaxZoneVertices); the slots past
  // them become unused. Between rounds: waits for the last round's kernel before rewriting.
  void set_zones(int32_t camera, const std::vector<std::vector<ZonePoint>>& polygons);
  // GPU: after every class's Tracker::enqueue on `stream` (views: each class's
  // Postprocessor::round_view(), in class order).
  void enqueue(const Tracker& tracker, const std::vector<RoundView>& views, const std::vector<int32_t>& cameras,
               ZoneRule rule, uintptr_t stream);
  // CPU twin: the same after every class's Tracker::run_cpu.
  void run_cpu(const Tracker& tracker, const std::vector<RoundView>& views, const std::vector<int32_t>& cameras,
               ZoneRule rule);
  // Waits for the last enqueue's copy (normally done: it follows the round's own work).
  void synchronize();
  const float* host_overlap() const { return host_overlap_; }  // [classes][capacity][max_zones]
  const uint32_t* host_bitmap(int32_t camera, int32_t zone) const;  // for tests
  const ZoneMasksConfig& config() const { return config_; }
  int64_t device_bytes() const { return device_bytes_; }
  int64_t pinned_bytes() const { return pinned_bytes_; }

 private:
  ClassRecords round_records(const Tracker& tracker, const std::vector<RoundView>& views,
                             const std::vector<int32_t>& cameras, bool on_device, FrameCameras& fc,
                             FrameSizes& sizes) const;
  int64_t slots() const { return static_cast<int64_t>(config_.max_cameras) * config_.max_zones; }
  void allocate_cuda();
  void release_cuda();

  ZoneMasksConfig config_;
  ZoneGeometry geometry_;
  std::vector<ZoneRegion> host_regions_;  // [cameras][max_zones], the source of the device copy
  std::vector<uint32_t> host_bitmaps_;    // [cameras][max_zones][mask_words]
  std::vector<float> cpu_overlap_;
  float* host_overlap_ = nullptr;          // pinned (GPU) or cpu_overlap_
  ZoneRegion* regions_ = nullptr;          // device (GPU) or host_regions_
  uint32_t* bitmaps_ = nullptr;
  float* overlap_ = nullptr;               // device (GPU)
  void* done_ = nullptr;                   // cudaEvent_t after the last round's copy
  int64_t device_bytes_ = 0, pinned_bytes_ = 0;
  int device_ = -1;
};

}  // namespace segpost
