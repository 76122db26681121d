#include "tracker.h"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "require.h"

#if SEGPOST_WITH_CUDA
#include "cuda_check.h"
#endif

namespace segpost {

int cuda_device_count();  // postprocess/postprocessor.cpp (the tracker includes only its RoundView)

namespace {

template <class Message>
void require(bool ok, Message&& message) {
  require_argument(ok, "segpost.Tracker", message);
}

// The Postprocessor's mask threshold in logit space (mask_iou.h's mask_bit).
float logit_threshold(const RoundView& c) {
  if (c.mask_mode == MaskMode::Logit) return c.mask_threshold;
  const float inf = std::numeric_limits<float>::infinity();
  if (c.mask_threshold <= 0.0f) return -inf;
  if (c.mask_threshold >= 1.0f) return inf;
  return std::log(c.mask_threshold / (1.0f - c.mask_threshold));
}

}  // namespace

Tracker::Tracker(const TrackerConfig& config)
    : config_(validated(config)),
      table_(config_),
      track_ids_(static_cast<size_t>(config_.num_classes) * config_.capacity, -1),
      enqueued_(config_.num_classes, 0),
      records_(config_.num_classes),
      detections_(config_.num_classes),
      firsts_(config_.num_classes) {
  const int32_t words = words_per_row(config_.mask_w);
  geometry_ = PoolGeometry{config_.mask_h, config_.mask_w, words, config_.mask_h * words, config_.capacity,
                           config_.max_tracks};
  // At most: every slot starts and ends once, and every detection evicts one lost track.
  events_.reserve(static_cast<size_t>(2 * slots() + static_cast<int64_t>(config_.num_classes) * config_.capacity));
  round_cameras_.reserve(kMaxFrames);
  if (config_.use_cuda) {
    try {
      allocate_cuda();
    } catch (...) {
      release_cuda();
      throw;
    }
    return;
  }
  const size_t det = static_cast<size_t>(config_.num_classes) * config_.capacity;
  cpu_words_.assign((det + slots()) * geometry_.mask_words, 0u);
  cpu_meta_.assign(det + slots(), MaskMeta{0, 0, 0, 0, 0});
  cpu_slots_.assign(slots(), SlotState{-1, 0, 0, 0, 0, 0, 0, 0});
  cpu_plan_.assign(slots(), SlotPlan{-1, -1, 0, 0, 0});
  cpu_iou_.assign(det * config_.max_tracks, 0.0f);
  det_packed_ = cpu_words_.data();
  pool_ = det_packed_ + det * geometry_.mask_words;
  det_meta_ = cpu_meta_.data();
  pool_meta_ = det_meta_ + det;
  slot_states_ = cpu_slots_.data();
  host_plan_ = cpu_plan_.data();
  host_iou_ = cpu_iou_.data();
}

Tracker::~Tracker() { release_cuda(); }

int64_t Tracker::host_bytes() const {
  return table_.host_bytes() +
         static_cast<int64_t>(track_ids_.size() * sizeof(int64_t) + events_.capacity() * sizeof(TrackEvent) +
                              cpu_words_.size() * sizeof(uint32_t) + cpu_meta_.size() * sizeof(MaskMeta) +
                              cpu_slots_.size() * sizeof(SlotState) + cpu_plan_.size() * sizeof(SlotPlan) +
                              cpu_iou_.size() * sizeof(float));
}

PackParams Tracker::begin_class(int32_t class_id, const RoundView& view, const void* masks, DType masks_dtype,
                                const std::vector<int32_t>& cameras, bool on_device) {
  require(class_id >= 0 && class_id < config_.num_classes, [&] {
    return "class " + std::to_string(class_id) + " outside 0 .. " + std::to_string(config_.num_classes - 1);
  });
  require(on_device == config_.use_cuda, on_device ? "device inputs given to a Tracker built for the CPU"
                                                   : "host inputs given to a Tracker built for CUDA");
  require(view.use_cuda == config_.use_cuda, "the Postprocessor and the Tracker must both run on CUDA or both on the CPU");
  require(view.mask_h == config_.mask_h && view.mask_w == config_.mask_w,
          "the Postprocessor's mask size differs from the Tracker's");
  require(view.capacity <= config_.capacity, [&] {
    return "the Postprocessor's capacity " + std::to_string(view.capacity) + " exceeds the Tracker's " +
           std::to_string(config_.capacity);
  });
  require(!enqueued_[class_id], [&] {
    return "class " + std::to_string(class_id) + " was already enqueued this round; call update() first";
  });
  // The kernels read masks at the Postprocessor's records: only the array it validated is safe to read.
  require(masks == view.masks && masks_dtype == view.masks_dtype, [&] {
    return "pred_masks must be the array just given to class " + std::to_string(class_id) + "'s Postprocessor";
  });
  require(!cameras.empty() && static_cast<int32_t>(cameras.size()) == view.num_frames,
          "one camera per frame of the batch");
  for (size_t f = 0; f < cameras.size(); ++f) {
    require(cameras[f] >= 0 && cameras[f] < config_.max_cameras, [&] {
      return "camera " + std::to_string(cameras[f]) + " outside 0 .. " + std::to_string(config_.max_cameras - 1);
    });
    for (size_t g = 0; g < f; ++g) require(cameras[g] != cameras[f], "a camera appears twice in one batch");
  }
  if (!round_open()) {
    round_cameras_.assign(cameras.begin(), cameras.end());
  } else {
    require(cameras == round_cameras_, "every class of a round must have the same cameras");
  }
  enqueued_[class_id] = 1;
  return PackParams{view.num_queries, logit_threshold(view)};
}

bool Tracker::round_open() const {
  for (char e : enqueued_) {
    if (e) return true;
  }
  return false;
}

FrameCameras Tracker::frame_cameras() const {
  FrameCameras fc{};
  for (size_t f = 0; f < round_cameras_.size(); ++f) fc.camera[f] = round_cameras_[f];
  return fc;
}

void Tracker::run_cpu(int32_t class_id, const RoundView& view, const void* masks, DType masks_dtype,
                      const std::vector<int32_t>& cameras) {
  const PackParams params = begin_class(class_id, view, masks, masks_dtype, cameras, false);
  const Records records = view.host_records();
  const int64_t first = static_cast<int64_t>(class_id) * config_.capacity;
  uint32_t* packed = det_packed_ + first * geometry_.mask_words;
  pack_masks_cpu(masks, masks_dtype, records, params, geometry_, packed);
  mask_iou_cpu(records, packed, frame_cameras(), slot_states_, pool_, geometry_, class_id, det_meta_ + first,
               host_iou_ + first * config_.max_tracks);
}

void Tracker::update(const std::vector<RoundView>& views, const std::vector<int64_t>& frame_ids,
                     const std::vector<int32_t>& heights, const std::vector<int32_t>& widths) {
  require(static_cast<int>(views.size()) == config_.num_classes,
          [&] { return "update() takes one Postprocessor per class (" + std::to_string(config_.num_classes) + ")"; });
  for (int32_t c = 0; c < config_.num_classes; ++c) {
    require(enqueued_[c], [&] { return "class " + std::to_string(c) + " was not enqueued this round"; });
  }
  const size_t n = round_cameras_.size();
  require(frame_ids.size() == n && heights.size() == n && widths.size() == n,
          [&] { return "one frame id and size per frame of the round (" + std::to_string(n) + ")"; });
  for (size_t f = 0; f < n; ++f) require(heights[f] >= 1 && widths[f] >= 1, "frame sizes must be positive");
  for (int32_t c = 0; c < config_.num_classes; ++c) {
    records_[c] = views[c].host_records();  // synchronized by the caller: the round's one wait
    require(records_[c].header->num_frames == static_cast<int32_t>(n), [&] {
      return "class " + std::to_string(c) + "'s results have " + std::to_string(records_[c].header->num_frames) +
             " frames, the round " + std::to_string(n);
    });
    firsts_[c] = 0;
  }
#if SEGPOST_WITH_CUDA
  if (config_.use_cuda) SEGPOST_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(iou_ready_)), "Tracker.update");
#endif
  events_.clear();
  for (size_t f = 0; f < n; ++f) {
    for (int32_t c = 0; c < config_.num_classes; ++c) {
      const Records& r = records_[c];
      detections_[c] = FrameDetections{r.box, r.score, firsts_[c], r.header->counts[f],
                                       host_iou_ + static_cast<int64_t>(c) * config_.capacity * config_.max_tracks};
      firsts_[c] += r.header->counts[f];
    }
    table_.camera_frame(round_cameras_[f], frame_ids[f], widths[f], heights[f], detections_, track_ids_.data(), events_);
  }
  if (config_.use_cuda) {
#if SEGPOST_WITH_CUDA
    DeviceGuard guard(device_);
    auto* stream = reinterpret_cast<cudaStream_t>(round_stream_);
    // host_plan_ is free: its last upload is before planned_, which this round's stream waited
    // for before recording iou_ready_, and the wait on iou_ready_ above has returned.
    table_.write_plan(host_plan_);
    SEGPOST_CUDA_CHECK(cudaMemcpyAsync(plan_, host_plan_, sizeof(SlotPlan) * slots(), cudaMemcpyHostToDevice, stream),
                       "Tracker.update (plan upload)");
    refresh_pool_cuda(plan_, static_cast<int32_t>(slots()), det_packed_, det_meta_, geometry_, pool_, pool_meta_,
                      slot_states_, stream);
    SEGPOST_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(planned_), stream), "Tracker.update");
#endif
  } else {
    table_.write_plan(host_plan_);
    refresh_pool_cpu(host_plan_, static_cast<int32_t>(slots()), det_packed_, det_meta_, geometry_, pool_, pool_meta_,
                     slot_states_);
  }
  std::fill(enqueued_.begin(), enqueued_.end(), 0);
}

void Tracker::abandon_round() {
  if (!round_open()) return;
  std::fill(enqueued_.begin(), enqueued_.end(), 0);  // first: a failed wait below still frees the next round
#if SEGPOST_WITH_CUDA
  // The abandoned classes' packing and IoU copies may still be queued; the next round rewrites
  // those buffers. The pool is refreshed only in update(), so the tracks are untouched.
  if (config_.use_cuda) SEGPOST_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(iou_ready_)), "Tracker.abandon_round");
#endif
}

std::vector<TrackEvent> Tracker::finish(int32_t camera) {
  std::vector<TrackEvent> ended;
  table_.finish(camera, ended);
  return ended;
}

#if SEGPOST_WITH_CUDA

void Tracker::allocate_cuda() {
  require(cuda_device_count() > 0, "no CUDA device is available; use device='cpu'");
  SEGPOST_CUDA_CHECK(cudaGetDevice(&device_), "Tracker()");
  const size_t det = static_cast<size_t>(config_.num_classes) * config_.capacity;
  const size_t words = static_cast<size_t>(geometry_.mask_words), n = static_cast<size_t>(slots());
  const size_t iou_bytes = det * config_.max_tracks * sizeof(float);
  auto device = [this](auto** ptr, size_t bytes, int fill) {
    SEGPOST_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(ptr), bytes), "Tracker()");
    SEGPOST_CUDA_CHECK(cudaMemset(*ptr, fill, bytes), "Tracker()");
    device_bytes_ += static_cast<int64_t>(bytes);
  };
  device(&det_packed_, det * words * sizeof(uint32_t), 0);
  device(&det_meta_, det * sizeof(MaskMeta), 0);
  device(&pool_, n * words * sizeof(uint32_t), 0);
  device(&pool_meta_, n * sizeof(MaskMeta), 0);
  device(&slot_states_, n * sizeof(SlotState), 0xff);  // class_id -1: every slot free
  device(&plan_, n * sizeof(SlotPlan), 0xff);
  device(&iou_, iou_bytes, 0);
  SEGPOST_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&host_iou_), iou_bytes, cudaHostAllocDefault), "Tracker()");
  SEGPOST_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&host_plan_), n * sizeof(SlotPlan), cudaHostAllocDefault),
                     "Tracker()");
  pinned_bytes_ = static_cast<int64_t>(iou_bytes + n * sizeof(SlotPlan));
  for (void** event : {&iou_ready_, &planned_}) {
    cudaEvent_t e;
    SEGPOST_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "Tracker()");
    *event = e;
  }
  SEGPOST_CUDA_CHECK(cudaDeviceSynchronize(), "Tracker()");  // the memsets, before any stream uses the buffers
}

void Tracker::release_cuda() {
  if (!config_.use_cuda) return;
  // Queued work may still write into the buffers about to be freed.
  for (void* event : {iou_ready_, planned_}) {
    if (event) cudaEventSynchronize(static_cast<cudaEvent_t>(event));
  }
  for (void* ptr : {static_cast<void*>(det_packed_), static_cast<void*>(det_meta_), static_cast<void*>(pool_),
                    static_cast<void*>(pool_meta_), static_cast<void*>(slot_states_), static_cast<void*>(plan_),
                    static_cast<void*>(iou_)}) {
    cudaFree(ptr);
  }
  cudaFreeHost(host_iou_);
  cudaFreeHost(host_plan_);
  for (void* event : {iou_ready_, planned_}) {
    if (event) cudaEventDestroy(static_cast<cudaEvent_t>(event));
  }
  det_packed_ = pool_ = nullptr;
  host_iou_ = nullptr;
  host_plan_ = nullptr;
  iou_ready_ = planned_ = nullptr;
}

void Tracker::enqueue(int32_t class_id, const RoundView& view, const void* masks, DType masks_dtype,
                      const std::vector<int32_t>& cameras, uintptr_t stream_handle) {
  const bool round_started = round_open();
  require(!round_started || stream_handle == round_stream_, "every class of a round must be enqueued on the same stream");
  const PackParams params = begin_class(class_id, view, masks, masks_dtype, cameras, true);
  DeviceGuard guard(device_);
  auto* stream = reinterpret_cast<cudaStream_t>(stream_handle);
  round_stream_ = stream_handle;
  // The last update's pool refresh, in case this round runs on another stream: once a round, the
  // round's other classes follow on the same stream.
  if (!round_started) {
    SEGPOST_CUDA_CHECK(cudaStreamWaitEvent(stream, static_cast<cudaEvent_t>(planned_), 0), "Tracker.enqueue");
  }
  const Records records = view.device_records();
  const int64_t first = static_cast<int64_t>(class_id) * config_.capacity;
  uint32_t* packed = det_packed_ + first * geometry_.mask_words;
  pack_masks_cuda(masks, masks_dtype, records, params, geometry_, packed, stream);
  mask_iou_cuda(records, packed, frame_cameras(), slot_states_, pool_, geometry_, class_id, det_meta_ + first,
                iou_ + first * config_.max_tracks, stream);
  const size_t rows = static_cast<size_t>(view.capacity) * config_.max_tracks;
  SEGPOST_CUDA_CHECK(cudaMemcpyAsync(host_iou_ + first * config_.max_tracks, iou_ + first * config_.max_tracks,
                                     rows * sizeof(float), cudaMemcpyDeviceToHost, stream),
                     "Tracker.enqueue (IoU copy)");
  SEGPOST_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(iou_ready_), stream), "Tracker.enqueue");
}

#else  // CPU-only build

void Tracker::allocate_cuda() {
  throw std::runtime_error("segpost was built without CUDA (no CUDA compiler was found at install time); "
                           "use device='cpu' (the C++ CPU twin)");
}
void Tracker::release_cuda() {}
void Tracker::enqueue(int32_t, const RoundView&, const void*, DType, const std::vector<int32_t>&, uintptr_t) {
  allocate_cuda();
}

#endif

}  // namespace segpost
