// The zone kernel; its CPU twin is zones.cpp, the shared math zones.h. The launch shape never
// depends on the kept counts: blocks past a class's records.header->total return, so nothing
// waits for the counts to reach the host.
#include "cuda_check.h"
#include "warp.h"
#include "zones.h"

namespace segpost {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;

// Block (k, c): detection k of class c; one warp per zone of its camera.
__global__ void __launch_bounds__(kThreads)
    zone_overlap_kernel(ClassRecords classes, const uint32_t* packed, const MaskMeta* meta, FrameCameras cameras,
                        FrameSizes sizes, const ZoneRegion* regions, const uint32_t* bitmaps, ZoneGeometry g,
                        ZoneRule rule, float* overlap) {
  const int k = blockIdx.x, c = blockIdx.y;
  const Records& r = classes.records[c];
  if (k >= r.header->total) return;
  const int64_t det = static_cast<int64_t>(c) * g.capacity + k;
  const int32_t frame = r.frame[k];
  const int64_t first = static_cast<int64_t>(cameras.camera[frame]) * g.max_zones;
  const MaskMeta m = meta[det];
  const int lane = threadIdx.x % 32;
  for (int z = threadIdx.x / 32; z < g.max_zones; z += kWarps) {
    const ZoneRegion& region = regions[first + z];
    float value = 0.0f;
    if (region.vertices == 0) {  // warp-uniform, as everything below
      value = 0.0f;
    } else if (rule == ZoneRule::BottomCentre) {
      value = bottom_centre_inside(region, r.box + 4 * k, sizes.width[frame], sizes.height[frame]) ? 1.0f : 0.0f;
    } else {
      const Rect both = intersect(meta_rect(m), zone_rect(region));
      if (!rect_empty(both)) {
        const int32_t inside = warp_sum(zone_intersection_part(packed + det * g.mask_words,
                                                               bitmaps + (first + z) * g.mask_words, g.words, both,
                                                               lane, 32));
        value = zone_share(inside, m.count);
      }
    }
    if (lane == 0) overlap[det * g.max_zones + z] = value;
  }
}

}  // namespace

void zone_overlap_cuda(const ClassRecords& classes, int32_t num_classes, const uint32_t* packed, const MaskMeta* meta,
                       const FrameCameras& cameras, const FrameSizes& sizes, const ZoneRegion* regions,
                       const uint32_t* bitmaps, const ZoneGeometry& g, ZoneRule rule, float* overlap, void* stream) {
  const dim3 grid(g.capacity, num_classes);
  zone_overlap_kernel<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(classes, packed, meta, cameras, sizes,
                                                                                regions, bitmaps, g, rule, overlap);
  SEGPOST_CHECK_LAUNCH("zones: zone_overlap");
}

}  // namespace segpost
