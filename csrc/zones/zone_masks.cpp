#include "zone_masks.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "require.h"

#if SEGPOST_WITH_CUDA
#include "cuda_check.h"
#endif

namespace segpost {

int cuda_device_count();  // postprocess/postprocessor.cpp (the zones include only its RoundView)

namespace {

template <class Message>
void require(bool ok, Message&& message) {
  require_argument(ok, "segpost.ZoneMasks", message);
}

}  // namespace

ZoneMasks::ZoneMasks(const ZoneMasksConfig& config) : config_(config) {
  require(config_.max_cameras >= 1 && config_.max_cameras <= kMaxFrames, "max_cameras must be in [1, 64]");
  require(config_.num_classes >= 1 && config_.num_classes <= kMaxZoneClasses, [&] {
    return "num_classes must be in [1, " + std::to_string(kMaxZoneClasses) + "]";
  });
  require(config_.capacity >= 1, "capacity must be positive");
  require(config_.mask_h >= 1 && config_.mask_w >= 1, "mask size must be positive");
  require(config_.max_zones >= 1 && config_.max_zones <= 1024, "max_zones must be in [1, 1024]");
  const int32_t words = words_per_row(config_.mask_w);
  geometry_ = ZoneGeometry{config_.mask_h, config_.mask_w, words, config_.mask_h * words, config_.capacity,
                           config_.max_zones};
  host_regions_.assign(slots(), ZoneRegion{});
  host_bitmaps_.assign(slots() * geometry_.mask_words, 0u);
  const size_t overlaps = static_cast<size_t>(config_.num_classes) * config_.capacity * config_.max_zones;
  if (config_.use_cuda) {
    try {
      allocate_cuda();
    } catch (...) {
      release_cuda();
      throw;
    }
    std::fill(host_overlap_, host_overlap_ + overlaps, 0.0f);
    return;
  }
  cpu_overlap_.assign(overlaps, 0.0f);
  host_overlap_ = cpu_overlap_.data();
  regions_ = host_regions_.data();
  bitmaps_ = host_bitmaps_.data();
}

ZoneMasks::~ZoneMasks() { release_cuda(); }

const uint32_t* ZoneMasks::host_bitmap(int32_t camera, int32_t zone) const {
  require(camera >= 0 && camera < config_.max_cameras && zone >= 0 && zone < config_.max_zones,
          "camera or zone out of range");
  return host_bitmaps_.data() + (static_cast<int64_t>(camera) * config_.max_zones + zone) * geometry_.mask_words;
}

void ZoneMasks::set_zones(int32_t camera, const std::vector<std::vector<ZonePoint>>& polygons) {
  require(camera >= 0 && camera < config_.max_cameras,
          [&] { return "camera " + std::to_string(camera) + " outside 0 .. " + std::to_string(config_.max_cameras - 1); });
  require(static_cast<int64_t>(polygons.size()) <= config_.max_zones, [&] {
    return "camera " + std::to_string(camera) + " has " + std::to_string(polygons.size()) + " zones; max_zones is " +
           std::to_string(config_.max_zones);
  });
  for (size_t z = 0; z < polygons.size(); ++z) {
    const auto& p = polygons[z];
    require(p.size() >= 3 && p.size() <= static_cast<size_t>(kMaxZoneVertices), [&] {
      return "zone " + std::to_string(z) + " has " + std::to_string(p.size()) + " vertices; 3 .. " +
             std::to_string(kMaxZoneVertices) + " allowed";
    });
    for (const ZonePoint& v : p) {
      require(std::isfinite(v.x) && std::isfinite(v.y), [&] { return "zone " + std::to_string(z) + " has a non-finite vertex"; });
    }
  }
  const int64_t first = static_cast<int64_t>(camera) * config_.max_zones;
  for (int32_t z = 0; z < config_.max_zones; ++z) {
    uint32_t* bitmap = host_bitmaps_.data() + (first + z) * geometry_.mask_words;
    if (z < static_cast<int32_t>(polygons.size())) {
      rasterise_zone(polygons[z].data(), static_cast<int>(polygons[z].size()), geometry_, bitmap, host_regions_[first + z]);
    } else {
      std::fill(bitmap, bitmap + geometry_.mask_words, 0u);
      host_regions_[first + z] = ZoneRegion{};
    }
  }
#if SEGPOST_WITH_CUDA
  if (config_.use_cuda) {
    DeviceGuard guard(device_);
    // The last round's kernel may still read the slots about to be rewritten.
    SEGPOST_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(done_)), "ZoneMasks.set_zones");
    SEGPOST_CUDA_CHECK(cudaMemcpy(regions_ + first, host_regions_.data() + first, sizeof(ZoneRegion) * config_.max_zones,
                                  cudaMemcpyHostToDevice),
                       "ZoneMasks.set_zones");
    SEGPOST_CUDA_CHECK(cudaMemcpy(bitmaps_ + first * geometry_.mask_words,
                                  host_bitmaps_.data() + first * geometry_.mask_words,
                                  sizeof(uint32_t) * config_.max_zones * geometry_.mask_words, cudaMemcpyHostToDevice),
                       "ZoneMasks.set_zones");
  }
#endif
}

ClassRecords ZoneMasks::round_records(const Tracker& tracker, const std::vector<RoundView>& views,
                                      const std::vector<int32_t>& cameras, bool on_device, FrameCameras& fc,
                                      FrameSizes& sizes) const {
  const TrackerConfig& t = tracker.config();
  require(on_device == config_.use_cuda, on_device ? "device inputs given to ZoneMasks built for the CPU"
                                                   : "host inputs given to ZoneMasks built for CUDA");
  require(t.use_cuda == config_.use_cuda, "the Tracker and ZoneMasks must both run on CUDA or both on the CPU");
  require(t.num_classes == config_.num_classes && t.capacity == config_.capacity && t.mask_h == config_.mask_h &&
              t.mask_w == config_.mask_w && t.max_cameras == config_.max_cameras,
          "the Tracker's cameras, classes, capacity or mask size differ from ZoneMasks'");
  require(static_cast<int32_t>(views.size()) == config_.num_classes,
          [&] { return "one Postprocessor per class (" + std::to_string(config_.num_classes) + ")"; });
  require(!cameras.empty() && cameras.size() <= static_cast<size_t>(kMaxFrames), "1 to 64 cameras a round");
  ClassRecords out{};
  for (int32_t c = 0; c < config_.num_classes; ++c) {
    const RoundView& view = views[c];
    require(view.capacity <= config_.capacity, "a Postprocessor's capacity exceeds ZoneMasks'");
    require(view.num_frames == static_cast<int32_t>(cameras.size()), [&] {
      return "class " + std::to_string(c) + "'s last batch has " + std::to_string(view.num_frames) +
             " frames, the round " + std::to_string(cameras.size()) + " cameras";
    });
    out.records[c] = on_device ? view.device_records() : view.host_records();
    if (c == 0) sizes = view.sizes;
  }
  fc = FrameCameras{};
  for (size_t f = 0; f < cameras.size(); ++f) {
    require(cameras[f] >= 0 && cameras[f] < config_.max_cameras, [&] {
      return "camera " + std::to_string(cameras[f]) + " outside 0 .. " + std::to_string(config_.max_cameras - 1);
    });
    fc.camera[f] = cameras[f];
  }
  return out;
}

void ZoneMasks::run_cpu(const Tracker& tracker, const std::vector<RoundView>& views,
                        const std::vector<int32_t>& cameras, ZoneRule rule) {
  FrameCameras fc;
  FrameSizes sizes;
  const ClassRecords records = round_records(tracker, views, cameras, false, fc, sizes);
  zone_overlap_cpu(records, config_.num_classes, tracker.packed_masks(), tracker.mask_meta(), fc, sizes, regions_,
                   bitmaps_, geometry_, rule, host_overlap_);
}

#if SEGPOST_WITH_CUDA

void ZoneMasks::allocate_cuda() {
  require(cuda_device_count() > 0, "no CUDA device is available; use device='cpu'");
  SEGPOST_CUDA_CHECK(cudaGetDevice(&device_), "ZoneMasks()");
  const size_t overlap_bytes =
      static_cast<size_t>(config_.num_classes) * config_.capacity * config_.max_zones * sizeof(float);
  auto device = [this](auto** ptr, size_t bytes) {
    SEGPOST_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(ptr), bytes), "ZoneMasks()");
    SEGPOST_CUDA_CHECK(cudaMemset(*ptr, 0, bytes), "ZoneMasks()");  // vertices 0: every slot unused
    device_bytes_ += static_cast<int64_t>(bytes);
  };
  device(&regions_, slots() * sizeof(ZoneRegion));
  device(&bitmaps_, slots() * geometry_.mask_words * sizeof(uint32_t));
  device(&overlap_, overlap_bytes);
  SEGPOST_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&host_overlap_), overlap_bytes, cudaHostAllocDefault),
                     "ZoneMasks()");
  pinned_bytes_ = static_cast<int64_t>(overlap_bytes);
  cudaEvent_t e;
  SEGPOST_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "ZoneMasks()");
  done_ = e;
  SEGPOST_CUDA_CHECK(cudaDeviceSynchronize(), "ZoneMasks()");  // the memsets, before any stream uses the buffers
}

void ZoneMasks::release_cuda() {
  if (!config_.use_cuda) return;
  if (done_) cudaEventSynchronize(static_cast<cudaEvent_t>(done_));
  for (void* ptr : {static_cast<void*>(regions_), static_cast<void*>(bitmaps_), static_cast<void*>(overlap_)}) {
    cudaFree(ptr);
  }
  cudaFreeHost(host_overlap_);
  if (done_) cudaEventDestroy(static_cast<cudaEvent_t>(done_));
  regions_ = nullptr;
  bitmaps_ = nullptr;
  overlap_ = host_overlap_ = nullptr;
  done_ = nullptr;
}

void ZoneMasks::enqueue(const Tracker& tracker, const std::vector<RoundView>& views,
                        const std::vector<int32_t>& cameras, ZoneRule rule, uintptr_t stream_handle) {
  FrameCameras fc;
  FrameSizes sizes;
  const ClassRecords records = round_records(tracker, views, cameras, true, fc, sizes);
  DeviceGuard guard(device_);
  auto* stream = reinterpret_cast<cudaStream_t>(stream_handle);
  zone_overlap_cuda(records, config_.num_classes, tracker.packed_masks(), tracker.mask_meta(), fc, sizes, regions_,
                    bitmaps_, geometry_, rule, overlap_, stream);
  const size_t bytes = static_cast<size_t>(config_.num_classes) * config_.capacity * config_.max_zones * sizeof(float);
  SEGPOST_CUDA_CHECK(cudaMemcpyAsync(host_overlap_, overlap_, bytes, cudaMemcpyDeviceToHost, stream),
                     "ZoneMasks.enqueue (overlap copy)");
  SEGPOST_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(done_), stream), "ZoneMasks.enqueue");
}

void ZoneMasks::synchronize() {
  if (!config_.use_cuda) return;
  SEGPOST_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(done_)), "ZoneMasks.synchronize");
}

#else  // CPU-only build

void ZoneMasks::allocate_cuda() {
  throw std::runtime_error("segpost was built without CUDA (no CUDA compiler was found at install time); "
                           "use device='cpu' (the C++ CPU twin)");
}
void ZoneMasks::release_cuda() {}
void ZoneMasks::synchronize() {}
void ZoneMasks::enqueue(const Tracker&, const std::vector<RoundView>&, const std::vector<int32_t>&, ZoneRule,
                        uintptr_t) {
  allocate_cuda();
}

#endif

}  // namespace segpost
