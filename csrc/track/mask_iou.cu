// The tracker's mask kernels; their CPU twin is mask_iou.cpp, the shared math mask_iou.h.
// Launch shapes never depend on the kept count: blocks past records.header->total return, so
// nothing waits for the count to reach the host.
#include <climits>

#include "cuda_check.h"
#include "mask_iou.h"
#include "warp.h"

namespace segpost {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kPoolThreads = 128;

// Block (k, band): warp i packs row band * kWarps + i of detection k, a ballot per word.
__global__ void __launch_bounds__(kThreads)
    pack_masks_kernel(const void* masks, DType dtype, Records records, PackParams p, PoolGeometry g, uint32_t* packed) {
  const int k = blockIdx.x;
  const int y = blockIdx.y * kWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (k >= records.header->total || y >= g.mask_h) return;  // warp-uniform
  const int64_t row = (static_cast<int64_t>(records.frame[k]) * p.num_queries + records.query[k]) *
                          (static_cast<int64_t>(g.mask_h) * g.mask_w) + static_cast<int64_t>(y) * g.mask_w;
  uint32_t* dst = packed + static_cast<int64_t>(k) * g.mask_words + y * g.words;
#pragma unroll 4
  for (int w = 0; w < g.words; ++w) {
    const int x = 32 * w + lane;
    const bool bit = x < g.mask_w && mask_bit(load_as_float(masks, row + x, dtype), p.threshold);
    const uint32_t word = __ballot_sync(0xffffffffu, bit);
    if (lane == 0) dst[w] = word;
  }
}

// A block-wide sum; `scratch` holds kWarps ints of shared memory. Every thread gets the total.
template <int kBlockThreads>
__device__ __forceinline__ int32_t block_sum(int32_t v, int32_t* scratch) {
  v = warp_sum(v);
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = v;
  __syncthreads();
  int32_t total = 0;
  for (int i = 0; i < kBlockThreads / 32; ++i) total += scratch[i];
  return total;
}

// Block k: detection k's MaskMeta, then one warp per slot of its camera's pool.
__global__ void __launch_bounds__(kThreads)
    mask_iou_kernel(Records records, const uint32_t* packed, FrameCameras cameras, const SlotState* slots,
                    const uint32_t* pool, PoolGeometry g, int32_t class_id, MaskMeta* meta, float* iou) {
  __shared__ int32_t count, x0, y0, x1, y1;
  const int k = blockIdx.x;
  if (k >= records.header->total) return;
  const uint32_t* det = packed + static_cast<int64_t>(k) * g.mask_words;
  if (threadIdx.x == 0) {
    count = 0, x0 = INT_MAX, y0 = INT_MAX, x1 = 0, y1 = 0;
  }
  __syncthreads();
  MaskMeta mine{0, 0, 0, 0, 0};
  for (int i = threadIdx.x; i < g.mask_words; i += kThreads) add_word(mine, det[i], i / g.words, i % g.words);
  if (mine.count) {
    atomicAdd(&count, mine.count);
    atomicMin(&x0, mine.x0);
    atomicMin(&y0, mine.y0);
    atomicMax(&x1, mine.x1);
    atomicMax(&y1, mine.y1);
  }
  __syncthreads();
  const MaskMeta m = count ? MaskMeta{count, x0, y0, x1, y1} : MaskMeta{0, 0, 0, 0, 0};
  if (threadIdx.x == 0) meta[k] = m;
  const int lane = threadIdx.x % 32;
  const int64_t first_slot = static_cast<int64_t>(cameras.camera[records.frame[k]]) * g.max_tracks;
  for (int s = threadIdx.x / 32; s < g.max_tracks; s += kWarps) {
    const SlotState state = slots[first_slot + s];
    float value = 0.0f;
    if (state.class_id == class_id) {  // warp-uniform, as is everything below
      const Rect both = intersect(meta_rect(m), slot_rect(state));
      if (!rect_empty(both)) {
        const int32_t inter = warp_sum(intersection_part(det, pool + (first_slot + s) * g.mask_words, g.words,
                                                         state.dx, state.dy, both, lane, 32));
        value = iou_from_counts(inter, m.count, state.count);
      }
    }
    if (lane == 0) iou[static_cast<int64_t>(k) * g.max_tracks + s] = value;
  }
}

// Block = one pool slot: take the planned detection's mask, then the state for the next frame.
__global__ void __launch_bounds__(kPoolThreads)
    refresh_pool_kernel(const SlotPlan* plan, const uint32_t* det_packed, const MaskMeta* det_meta, PoolGeometry g,
                        uint32_t* pool, MaskMeta* pool_meta, SlotState* slots) {
  __shared__ int32_t scratch[kPoolThreads / 32];
  const int slot = blockIdx.x;
  const SlotPlan e = plan[slot];
  uint32_t* mask = pool + static_cast<int64_t>(slot) * g.mask_words;
  MaskMeta m = pool_meta[slot];
  if (e.source_class >= 0) {
    const int64_t source = static_cast<int64_t>(e.source_class) * g.capacity + e.source_k;
    const uint32_t* from = det_packed + source * g.mask_words;
    for (int i = threadIdx.x; i < g.mask_words; i += kPoolThreads) mask[i] = from[i];
    m = det_meta[source];
    __syncthreads();  // the block's copies are visible to all its threads below
    if (threadIdx.x == 0) pool_meta[slot] = m;
  }
  const Rect r = shifted_rect(m, e.dx, e.dy, g.mask_w, g.mask_h);
  int32_t count = m.count;
  if (e.class_id >= 0 && rect_clipped(m, r, e.dx, e.dy)) {  // block-uniform
    count = block_sum<kPoolThreads>(kept_part(mask, g.words, e.dx, e.dy, r, threadIdx.x, kPoolThreads), scratch);
  }
  if (threadIdx.x == 0) slots[slot] = planned_state(e, count, r);
}

}  // namespace

void pack_masks_cuda(const void* masks, DType dtype, const Records& records, const PackParams& params,
                     const PoolGeometry& g, uint32_t* packed, void* stream) {
  const dim3 grid(g.capacity, (g.mask_h + kWarps - 1) / kWarps);
  pack_masks_kernel<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(masks, dtype, records, params, g, packed);
  SEGPOST_CHECK_LAUNCH("track: pack_masks");
}

void mask_iou_cuda(const Records& records, const uint32_t* packed, const FrameCameras& cameras, const SlotState* slots,
                   const uint32_t* pool, const PoolGeometry& g, int32_t class_id, MaskMeta* meta, float* iou,
                   void* stream) {
  mask_iou_kernel<<<g.capacity, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(records, packed, cameras, slots, pool,
                                                                                  g, class_id, meta, iou);
  SEGPOST_CHECK_LAUNCH("track: mask_iou");
}

void refresh_pool_cuda(const SlotPlan* plan, int32_t num_slots, const uint32_t* det_packed, const MaskMeta* det_meta,
                       const PoolGeometry& g, uint32_t* pool, MaskMeta* pool_meta, SlotState* slots, void* stream) {
  refresh_pool_kernel<<<num_slots, kPoolThreads, 0, static_cast<cudaStream_t>(stream)>>>(plan, det_packed, det_meta, g,
                                                                                         pool, pool_meta, slots);
  SEGPOST_CHECK_LAUNCH("track: refresh_pool");
}

}  // namespace segpost
