#include "cuda_check.h"
#include "rle.h"
#include "warp.h"

namespace segpost {
namespace {

// COCO RLE (column-major order). A warp takes an output column; each lane a run of
// consecutive rows, whose transitions (a pixel differing from the one above it) it packs into
// 32-bit words. Counting them is a popcount; placing them needs only the lanes' prefix sums.
// A block takes kRleColumns columns of one mask and first blends, in shared memory, the few source
// columns they sample vertically for every output row; a pixel is then one horizontal blend.

constexpr int kRleWarps = 8;
constexpr int kRleThreads = kRleWarps * 32;
constexpr int kRleColumns = 32;  // output columns per block, kRleColumns / kRleWarps a warp

// Blended columns x output rows held in shared memory: a block of the largest frame samples at
// most kRleColumns * mask_w / max_w + 3 source columns. Smaller frames of the same shape need
// about as much; blocks that need more (narrower frames) read global memory instead.
int rle_cache_floats(int max_frame_h, int max_frame_w, int mask_w) {
  return static_cast<int>((static_cast<int64_t>(kRleColumns) * mask_w + max_frame_w - 1) / max_frame_w + 3) *
         max_frame_h;
}

// Rows a lane walks (odd: lanes then read different shared memory banks) and the 32-bit
// transition words they fill.
__host__ __device__ int rle_rows_per_lane(int height) { return ((height + 31) / 32) | 1; }
__host__ __device__ int rle_words_per_lane(int height) { return (rle_rows_per_lane(height) + 31) / 32; }

size_t rle_shared_bytes(int max_frame_h, int max_frame_w, int mask_w) {
  return static_cast<size_t>(max_frame_h) * 3 * sizeof(int32_t) +
         static_cast<size_t>(rle_cache_floats(max_frame_h, max_frame_w, mask_w)) * sizeof(float) +
         static_cast<size_t>(kRleThreads) * rle_words_per_lane(max_frame_h) * sizeof(uint32_t);
}

// kWrite = false: per column, the number of transitions and the position of the last one (-1:
// none). kWrite = true: the run lengths, at the offsets the scan and place kernels assigned.
template <bool kWrite>
__global__ void __launch_bounds__(kRleThreads)
    rle_columns_kernel(FrameSizes sizes, MaskParams params, Records records, const float* lowres, RleScratch scratch,
                       int max_frame_h, int max_frame_w, int cache_floats) {
  extern __shared__ int32_t shared[];
  const int k = blockIdx.y;
  if (k >= records.header->total) return;
  if (kWrite && records.mask_length[k] < 0) return;
  const int f = records.frame[k];
  const int height = sizes.height[f], width = sizes.width[f];
  const int x_first = blockIdx.x * kRleColumns;
  if (x_first >= width) return;
  const int x_end = min(x_first + kRleColumns, width);
  const int src_h = params.mask_h, src_w = params.mask_w;
  int32_t* tap_i0 = shared;
  int32_t* tap_i1 = shared + max_frame_h;
  float* tap_w1 = reinterpret_cast<float*>(shared + 2 * max_frame_h);
  float* blended = reinterpret_cast<float*>(shared + 3 * max_frame_h);  // [c_count, height]
  const int lane = threadIdx.x & 31;
  const int rows_per_lane = rle_rows_per_lane(height);
  uint32_t* words = reinterpret_cast<uint32_t*>(blended + cache_floats) +
                    threadIdx.x * rle_words_per_lane(max_frame_h);
  const float* src = lowres + k * static_cast<int64_t>(src_h) * src_w;
  const double scale_x = resize_scale(src_w, width);
  // Source columns of x_first - 1 (its last pixel precedes x_first's first) .. x_end - 1.
  const int c_first = linear_tap(max(x_first - 1, 0), scale_x, src_w).i0;
  const int c_count = linear_tap(x_end - 1, scale_x, src_w).i1 - c_first + 1;
  const bool use_cache = c_count * height <= cache_floats;
  const double scale_y = resize_scale(src_h, height);
  for (int y = threadIdx.x; y < height; y += blockDim.x) {
    const LinearTap t = linear_tap(y, scale_y, src_h);
    tap_i0[y] = t.i0;
    tap_i1[y] = t.i1;
    tap_w1[y] = t.w1;
  }
  __syncthreads();
  if (use_cache) {  // a warp per source column
    for (int c = threadIdx.x / 32; c < c_count; c += kRleWarps) {
      for (int y = lane; y < height; y += 32) {
        blended[c * height + y] = blend_rows(src + c_first + c, src_w, LinearTap{tap_i0[y], tap_i1[y], tap_w1[y]});
      }
    }
    __syncthreads();
  }
  // column_of(x) describes output column x for pixel_at(column, y); the walk is compiled once for
  // the cached and once for the global path, so neither pays for the other in its inner loop.
  auto walk = [&](auto column_of, auto pixel_at) {
    const int y_begin = min(lane * rows_per_lane, height);
    const int y_end = min(y_begin + rows_per_lane, height);
    for (int x = x_first + threadIdx.x / 32; x < x_end; x += kRleWarps) {
      const auto column = column_of(x);
      // The pixel above the lane's first: in the previous column (its last row; 0 before the first).
      uint32_t carry = y_begin > 0 ? (y_begin < height && pixel_at(column, y_begin - 1))
                                   : (x > 0 && pixel_at(column_of(x - 1), height - 1));
      const int base = x * height;
      int32_t found = 0, last = -1;
      for (int y0 = y_begin, w = 0; y0 < y_end; y0 += 32, ++w) {
        const int n = min(32, y_end - y0);
        uint32_t bits = 0;
#pragma unroll 8
        for (int b = 0; b < n; ++b) bits |= static_cast<uint32_t>(pixel_at(column, y0 + b)) << b;
        const uint32_t transitions = (bits ^ ((bits << 1) | carry)) & (n == 32 ? 0xffffffffu : (1u << n) - 1);
        carry = bits >> (n - 1) & 1u;
        found += __popc(transitions);
        if (transitions) last = base + y0 + 31 - __clz(transitions);
        if (kWrite) words[w] = transitions;
      }
      const int64_t slot = static_cast<int64_t>(k) * max_frame_w + x;
      if (!kWrite) {
        found = warp_sum(found);
        last = warp_max(last);
        if (lane == 0) {
          scratch.column_a[slot] = found;
          scratch.column_b[slot] = last;
        }
        continue;
      }
      // The lane's first run: after the runs of the lanes above it, from the last transition
      // among them (or the boundary the scan gave the column).
      int32_t runs_before = found, boundary = last;
      for (int d = 1; d < 32; d <<= 1) {
        const int32_t runs = __shfl_up_sync(0xffffffffu, runs_before, d);
        const int32_t position = __shfl_up_sync(0xffffffffu, boundary, d);
        if (lane >= d) {
          runs_before += runs;
          boundary = max(boundary, position);
        }
      }
      runs_before = __shfl_up_sync(0xffffffffu, runs_before, 1);
      boundary = __shfl_up_sync(0xffffffffu, boundary, 1);
      if (lane == 0) {
        runs_before = 0;
        boundary = -1;
      }
      boundary = max(boundary, scratch.column_b[slot]);
      int32_t* out = scratch.counts + records.mask_offset[k] / static_cast<int64_t>(sizeof(int32_t)) +
                     scratch.column_a[slot] + runs_before;
      for (int y0 = y_begin, w = 0; y0 < y_end; y0 += 32, ++w) {
        for (uint32_t transitions = words[w]; transitions; transitions &= transitions - 1) {
          const int32_t position = base + y0 + __ffs(transitions) - 1;
          *out++ = position - boundary;
          boundary = position;
        }
      }
    }
  };
  const float threshold = params.threshold;
  if (use_cache) {
    struct BlendedColumns {
      const float* first;
      const float* second;
      float w1;
    };
    walk(
        [&](int x) {
          const LinearTap tx = linear_tap(x, scale_x, src_w);
          return BlendedColumns{blended + (tx.i0 - c_first) * height, blended + (tx.i1 - c_first) * height, tx.w1};
        },
        [&](const BlendedColumns& c, int y) { return blend(c.first[y], c.second[y], c.w1) > threshold; });
  } else {
    walk([&](int x) { return linear_tap(x, scale_x, src_w); },
         [&](const LinearTap& tx, int y) {
           return bilinear(src, src_w, LinearTap{tap_i0[y], tap_i1[y], tap_w1[y]}, tx) > threshold;
         });
  }
}

// Exclusive scan over the block (blockDim.x a multiple of 32, at most 1024); `aggregate` gets the
// whole block's result. Uses and releases `warp_totals` (32 entries of shared memory).
template <typename Op>
__device__ int32_t block_exclusive_scan(int32_t value, int32_t identity, Op op, int32_t* warp_totals,
                                        int32_t& aggregate) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  int32_t inclusive = value;
  for (int d = 1; d < 32; d <<= 1) {
    const int32_t other = __shfl_up_sync(0xffffffffu, inclusive, d);
    if (lane >= d) inclusive = op(inclusive, other);
  }
  if (lane == 31) warp_totals[warp] = inclusive;
  const int32_t within_warp = __shfl_up_sync(0xffffffffu, inclusive, 1);
  __syncthreads();
  int32_t before = identity;
  aggregate = identity;
  for (int w = 0; w < warps; ++w) {
    if (w < warp) before = op(before, warp_totals[w]);
    aggregate = op(aggregate, warp_totals[w]);
  }
  __syncthreads();
  return lane == 0 ? before : op(before, within_warp);
}

struct Sum {
  __device__ int32_t operator()(int32_t a, int32_t b) const { return a + b; }
};
struct Max {
  __device__ int32_t operator()(int32_t a, int32_t b) const { return max(a, b); }
};

constexpr int kRleScanThreads = 256;

// A block per mask: the exclusive scan of its column transition counts (-> each column's first
// run in the mask's counts) and the running last transition before each column (-> the boundary
// its first run starts from; 0 before any).
__global__ void __launch_bounds__(kRleScanThreads)
    rle_scan_kernel(FrameSizes sizes, Records records, RleScratch scratch, int max_frame_w) {
  __shared__ int32_t warp_totals[32];
  const int k = blockIdx.x;
  if (k >= records.header->total) return;
  const int width = sizes.width[records.frame[k]];
  int32_t runs = 0, last = 0;  // carried over tiles of blockDim.x columns
  for (int x0 = 0; x0 < width; x0 += blockDim.x) {
    const int x = x0 + threadIdx.x;
    const int64_t column = static_cast<int64_t>(k) * max_frame_w + x;
    const int32_t found = x < width ? scratch.column_a[column] : 0;
    const int32_t column_last = x < width ? scratch.column_b[column] : -1;
    int32_t tile_runs, tile_last;
    const int32_t runs_before = block_exclusive_scan(found, 0, Sum{}, warp_totals, tile_runs);
    const int32_t last_before = block_exclusive_scan(column_last, 0, Max{}, warp_totals, tile_last);
    if (x < width) {
      scratch.column_a[column] = runs + runs_before;
      scratch.column_b[column] = max(last, last_before);
    }
    runs += tile_runs;
    last = max(last, tile_last);
  }
  if (threadIdx.x == 0) {
    scratch.mask_total[k] = runs;
    scratch.mask_last[k] = last;
  }
}

// One block places the masks in order in the counts buffer, each with its final run (to the
// mask's end). Masks that do not fit get length -1; those after them still may.
__global__ void __launch_bounds__(1024)
    rle_place_kernel(FrameSizes sizes, RleParams rle, Records records, RleScratch scratch) {
  __shared__ int32_t warp_totals[32];
  const int total = records.header->total;
  auto length_of = [&](int k) { return scratch.mask_total[k] + 1; };
  auto place = [&](int k, int64_t offset) {
    const int f = records.frame[k];
    records.mask_offset[k] = offset * static_cast<int64_t>(sizeof(int32_t));
    records.mask_length[k] = length_of(k);
    scratch.counts[offset + length_of(k) - 1] = sizes.height[f] * sizes.width[f] - scratch.mask_last[k];
  };
  // Lengths are below the capacity (< 2^31), but their sum may not be: carry it in 64 bits.
  int64_t used = 0;
  bool fits = true;
  for (int k0 = 0; k0 < total && fits; k0 += blockDim.x) {
    const int k = k0 + threadIdx.x;
    int32_t tile_total;
    const int32_t before = block_exclusive_scan(k < total ? length_of(k) : 0, 0, Sum{}, warp_totals, tile_total);
    fits = used + tile_total <= rle.capacity;
    if (fits && k < total) place(k, used + before);
    used += tile_total;
  }
  if (threadIdx.x != 0) return;
  int32_t overflow = 0;
  if (!fits) {  // rare: some masks do not fit; place them one by one
    used = 0;
    for (int k = 0; k < total; ++k) {
      if (used + length_of(k) > rle.capacity) {
        records.mask_length[k] = -1;
        records.mask_offset[k] = 0;
        overflow = 1;
        continue;
      }
      place(k, used);
      used += length_of(k);
    }
  }
  records.header->mask_overflow = overflow;
  records.header->mask_bytes = used * static_cast<int64_t>(sizeof(int32_t));
}

// The runs are written in device memory, then copied to the mapped host buffer in 16-byte
// coalesced stores: scattered 4-byte stores straight into host memory each cost a PCIe write.
constexpr int kRleCopyBlocks = 64;
constexpr int kRleCopyThreads = 256;

__global__ void __launch_bounds__(kRleCopyThreads)
    rle_copy_kernel(const Header* header, const int32_t* from, int32_t* to) {
  const int64_t n = header->mask_bytes / static_cast<int64_t>(sizeof(int32_t));
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const auto* from4 = reinterpret_cast<const int4*>(from);
  auto* to4 = reinterpret_cast<int4*>(to);
  for (int64_t i = first; i < n / 4; i += stride) to4[i] = from4[i];
  for (int64_t i = n / 4 * 4 + first; i < n; i += stride) to[i] = from[i];
}

}  // namespace

void prepare_rle_masks_cuda(int max_frame_h, int max_frame_w, int mask_w) {
  const size_t bytes = rle_shared_bytes(max_frame_h, max_frame_w, mask_w);
  reserve_dynamic_shared_memory(reinterpret_cast<const void*>(rle_columns_kernel<false>), "segpost.Postprocessor", bytes, "max_frame_size height");
  reserve_dynamic_shared_memory(reinterpret_cast<const void*>(rle_columns_kernel<true>), "segpost.Postprocessor", bytes, "max_frame_size height");
}

void rle_masks_cuda(const FrameSizes& sizes, const MaskParams& params, const RleParams& rle, const Records& records,
                    int capacity, int max_frame_h, int max_frame_w, const float* lowres, const RleScratch& scratch,
                    int32_t* counts, void* stream) {
  auto* s = static_cast<cudaStream_t>(stream);
  const dim3 grid((max_frame_w + kRleColumns - 1) / kRleColumns, capacity);
  const size_t shared = rle_shared_bytes(max_frame_h, max_frame_w, params.mask_w);
  const int cache_floats = rle_cache_floats(max_frame_h, max_frame_w, params.mask_w);
  rle_columns_kernel<false><<<grid, kRleThreads, shared, s>>>(sizes, params, records, lowres, scratch, max_frame_h,
                                                              max_frame_w, cache_floats);
  SEGPOST_CHECK_LAUNCH("rle (count)");
  rle_scan_kernel<<<capacity, kRleScanThreads, 0, s>>>(sizes, records, scratch, max_frame_w);
  SEGPOST_CHECK_LAUNCH("rle (scan)");
  rle_place_kernel<<<1, 1024, 0, s>>>(sizes, rle, records, scratch);
  SEGPOST_CHECK_LAUNCH("rle (place)");
  rle_columns_kernel<true><<<grid, kRleThreads, shared, s>>>(sizes, params, records, lowres, scratch, max_frame_h,
                                                             max_frame_w, cache_floats);
  SEGPOST_CHECK_LAUNCH("rle (write)");
  rle_copy_kernel<<<kRleCopyBlocks, kRleCopyThreads, 0, s>>>(records.header, scratch.counts, counts);
  SEGPOST_CHECK_LAUNCH("rle (copy)");
}

}  // namespace segpost
