#include "cuda_check.h"
#include "masks.h"

namespace segpost {
namespace {

constexpr int kThreads = 256;
constexpr int kGatherBlocksPerMask = 40;
// Blocks per mask for the resize; the grid's y is the capacity and blocks past the kept count
// return at once, so the launch never waits for the count to reach the host.
constexpr int kResizeBlocksPerMask = 48;

__global__ void gather_masks_kernel(Batch batch, MaskParams params, Records records, float* lowres) {
  const int k = blockIdx.y;
  if (k >= records.header->total) return;
  const int64_t hw = static_cast<int64_t>(params.mask_h) * params.mask_w;
  const int64_t src = (static_cast<int64_t>(records.frame[k]) * params.num_queries + records.query[k]) * hw;
  float* dst = lowres + k * hw;
  for (int64_t p = blockIdx.x * blockDim.x + threadIdx.x; p < hw; p += gridDim.x * blockDim.x) {
    dst[p] = mask_source_value(load_as_float(batch.masks, src + p, batch.masks_dtype), params.mode);
  }
}

// 4 bits (pixel i at bit i) -> 4 bytes of 0/1, as one little-endian word.
__device__ __forceinline__ uint32_t spread_nibble(uint32_t nibble) { return (nibble * 0x00204081u) & 0x01010101u; }

// Ballot order (pixel i at bit i) -> packbits' order (pixel 0 at the top bit of byte 0).
__device__ __forceinline__ uint32_t to_packbits_order(uint32_t ballot) { return __byte_perm(__brev(ballot), 0, 0x0123); }

// Shared memory: the column taps of the widest frame (i0, 1 - w1, w1), then kCachedRows source
// rows blended vertically for the output rows a block range covers.
constexpr int kCachedRows = 16;
constexpr int kChunkPixels = 512;  // per warp: 16 ballots of 32 pixels
constexpr int kBlockPixels = kChunkPixels * kThreads / 32;

size_t resize_shared_bytes(int max_frame_w, int mask_w) {
  return static_cast<size_t>(max_frame_w) * 3 * sizeof(int32_t) + static_cast<size_t>(kCachedRows) * mask_w * sizeof(float);
}

struct MaskGeometry {
  const float* src;     // the gathered low-res map, [src_h, src_w]
  const float* rows;    // shared: source rows blended for output rows y_first ..
  const int32_t* tap_i0;
  const float* tap_w0;
  const float* tap_w1;
  int src_h, src_w, width, n, y_first;  // width, n, y_first: of the window
  int y0;                                // the window's first frame row
  double scale_y;
  float threshold;
};

// Binarizes 512 consecutive pixels from `p` (lane l takes pixels l, l + 32, ...). Returns the
// ballot of step l in lane l (lanes 16..31 get 0): one select a step instead of assembling bytes.
// kCachedRows: the block's rows are blended in shared memory; kWhole: all 512 pixels exist.
template <bool kCachedRows, bool kWhole>
__device__ __forceinline__ uint32_t binarize_chunk(const MaskGeometry& g, int p, int lane) {
  int y = p / g.width;
  int x = p - y * g.width;
  const float* row = g.rows + (y - g.y_first) * g.src_w;
  uint32_t mine = 0;
#pragma unroll
  for (int step = 0; step < kChunkPixels / 32; ++step) {
    bool bit = false;
    if (kWhole || p < g.n) {
      const int32_t i0 = g.tap_i0[x];
      const int32_t i1 = next_index(i0, g.src_w);
      float left, right;
      if (kCachedRows) {
        left = row[i0];
        right = row[i1];
      } else {
        const LinearTap ty = linear_tap(g.y0 + y, g.scale_y, g.src_h);
        const float* row0 = g.src + ty.i0 * g.src_w;
        const float* row1 = g.src + ty.i1 * g.src_w;
        left = blend(row0[i0], row1[i0], ty.w1);
        right = blend(row0[i1], row1[i1], ty.w1);
      }
      bit = blend(left, right, g.tap_w0[x], g.tap_w1[x]) > g.threshold;
    }
    const uint32_t ballot = __ballot_sync(0xffffffffu, bit);
    if (lane == step) mine = ballot;
    if (!kWhole) p += 32;
    x += 32;
    while (x >= g.width) {
      x -= g.width;
      ++y;
      row += g.src_w;
    }
  }
  return mine;
}

template <bool kCachedRows>
__device__ __forceinline__ uint32_t binarize_chunk(const MaskGeometry& g, int p, int lane) {
  const bool whole = p - (p & 31) + kChunkPixels <= g.n;  // warp-uniform
  return whole ? binarize_chunk<kCachedRows, true>(g, p, lane) : binarize_chunk<kCachedRows, false>(g, p, lane);
}

// A block takes 4096 consecutive pixels of one mask at a time, each warp 512 of them; then each
// lane stores 16 contiguous bytes (coalesced, also when `out` is mapped host memory).
// kBits = 8: uint8 0/1 (512 bytes a warp); kBits = 1: packed bits (64 bytes a warp).
template <int kBits>
__global__ void __launch_bounds__(kThreads)
    resize_masks_kernel(FrameSizes sizes, MaskParams params, Records records, const float* lowres, uint8_t* out,
                        int max_frame_w) {
  extern __shared__ int32_t shared[];
  constexpr int kChunkBytes = kChunkPixels * kBits / 8;
  const int k = blockIdx.y;
  if (k >= records.header->total) return;
  const int f = records.frame[k];
  MaskGeometry g;
  const int frame_w = sizes.width[f], height = sizes.height[f];
  const Window win = params.form == MaskForm::Crop ? crop_window(records.box + 4 * k, frame_w, height)
                                                   : Window{0, 0, frame_w, height};
  if (blockIdx.x == 0 && threadIdx.x < 4) records.window[4 * k + threadIdx.x] = (&win.x0)[threadIdx.x];
  g.width = win.w;
  g.y0 = win.y0;
  g.n = win.h * win.w;
  g.src_h = params.mask_h;
  g.src_w = params.mask_w;
  g.src = lowres + k * static_cast<int64_t>(g.src_h) * g.src_w;
  g.scale_y = resize_scale(g.src_h, height);
  g.threshold = params.threshold;
  int32_t* tap_i0 = shared;
  float* tap_w0 = reinterpret_cast<float*>(shared + max_frame_w);
  float* tap_w1 = reinterpret_cast<float*>(shared + 2 * max_frame_w);
  float* rows = reinterpret_cast<float*>(shared + 3 * max_frame_w);
  g.tap_i0 = tap_i0;
  g.tap_w0 = tap_w0;
  g.tap_w1 = tap_w1;
  g.rows = rows;
  const double scale_x = resize_scale(g.src_w, frame_w);
  for (int x = threadIdx.x; x < g.width; x += blockDim.x) {
    const LinearTap t = linear_tap(win.x0 + x, scale_x, g.src_w);
    tap_i0[x] = t.i0;
    tap_w0[x] = 1.0f - t.w1;
    tap_w1[x] = t.w1;
  }

  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x / 32;
  const int payload = static_cast<int>(mask_payload_bytes(win.h, g.width, kBits));
  const int ranges = (g.n + kBlockPixels - 1) / kBlockPixels;
  uint8_t* dst = out + records.mask_offset[k];
  for (int range = blockIdx.x; range < ranges; range += gridDim.x) {
    const int first = range * kBlockPixels;
    const int last = (first + kBlockPixels < g.n ? first + kBlockPixels : g.n) - 1;
    g.y_first = first / g.width;
    const int num_rows = last / g.width - g.y_first + 1;
    // Narrow frames span too many rows for the cache: their pixels blend from global memory.
    const bool cached = num_rows <= kCachedRows;
    __syncthreads();  // taps written; the previous range's rows no longer read
    if (cached) {
      for (int idx = threadIdx.x; idx < num_rows * g.src_w; idx += blockDim.x) {
        const int r = idx / g.src_w, sx = idx - r * g.src_w;
        const LinearTap ty = linear_tap(g.y0 + g.y_first + r, g.scale_y, g.src_h);
        rows[idx] = blend(g.src[ty.i0 * g.src_w + sx], g.src[ty.i1 * g.src_w + sx], ty.w1);
      }
    }
    __syncthreads();

    const int chunk = range * (kThreads / 32) + warp;
    const int p = chunk * kChunkPixels + lane;
    const uint32_t mine = cached ? binarize_chunk<true>(g, p, lane) : binarize_chunk<false>(g, p, lane);
    uint32_t words[4];
    if (kBits == 8) {
      // Lane l owns pixels 16l .. 16l+15: half of the ballot of step l/2.
      const uint32_t half = (__shfl_sync(0xffffffffu, mine, lane / 2) >> (16 * (lane & 1))) & 0xffffu;
#pragma unroll
      for (int w = 0; w < 4; ++w) words[w] = spread_nibble((half >> (4 * w)) & 0xfu);
    } else {
      // Lane l < 4 owns bytes 16l .. 16l+15: the ballots of steps 4l .. 4l+3.
#pragma unroll
      for (int r = 0; r < 4; ++r) words[r] = to_packbits_order(__shfl_sync(0xffffffffu, mine, (4 * lane + r) & 31));
    }
    const int byte0 = chunk * kChunkBytes + 16 * lane;
    if (16 * lane >= kChunkBytes || byte0 >= payload) continue;
    if (byte0 + 16 <= payload) {
      *reinterpret_cast<uint4*>(dst + byte0) = make_uint4(words[0], words[1], words[2], words[3]);
    } else {
      // The mask's last bytes; selects keep `words` in registers (an indexed read would not).
      for (int i = 0; byte0 + i < payload; ++i) {
        const int w = i / 4;
        const uint32_t word = w == 0 ? words[0] : w == 1 ? words[1] : w == 2 ? words[2] : words[3];
        dst[byte0 + i] = static_cast<uint8_t>(word >> (8 * (i % 4)));
      }
    }
  }
}

// LowRes: the gathered maps as fp16, each at its record's offset.
__global__ void lowres_masks_kernel(MaskParams params, Records records, const float* lowres, uint8_t* out) {
  const int k = blockIdx.y;
  if (k >= records.header->total) return;
  const int64_t hw = static_cast<int64_t>(params.mask_h) * params.mask_w;
  const float* src = lowres + k * hw;
  auto* dst = reinterpret_cast<uint16_t*>(out + records.mask_offset[k]);
  if (blockIdx.x == 0 && threadIdx.x < 4) records.window[4 * k + threadIdx.x] = threadIdx.x < 2 ? 0 : threadIdx.x == 2 ? params.mask_w : params.mask_h;
  for (int64_t p = blockIdx.x * blockDim.x + threadIdx.x; p < hw; p += gridDim.x * blockDim.x) {
    dst[p] = lowres_half_bits(src[p]);
  }
}

// ---- RLE (column-major, COCO's order). A warp takes an output column; each lane a run of
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

__device__ __forceinline__ int32_t warp_sum(int32_t value) {
  for (int d = 16; d > 0; d >>= 1) value += __shfl_xor_sync(0xffffffffu, value, d);
  return value;
}

__device__ __forceinline__ int32_t warp_max(int32_t value) {
  for (int d = 16; d > 0; d >>= 1) value = max(value, __shfl_xor_sync(0xffffffffu, value, d));
  return value;
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

__global__ void __launch_bounds__(kThreads)
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

void gather_masks_cuda(const Batch& batch, const MaskParams& params, const Records& records,
                       int capacity, float* lowres, void* stream) {
  const dim3 grid(kGatherBlocksPerMask, capacity);
  gather_masks_kernel<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(batch, params, records, lowres);
  SEGPOST_CHECK_LAUNCH("gather_masks");
}

void lowres_masks_cuda(const MaskParams& params, const Records& records, int capacity, const float* lowres,
                       uint8_t* out, void* stream) {
  const dim3 grid(kGatherBlocksPerMask, capacity);
  lowres_masks_kernel<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(params, records, lowres, out);
  SEGPOST_CHECK_LAUNCH("lowres_masks");
}

void prepare_resize_masks_cuda(int max_frame_w, int mask_w) {
  const size_t bytes = resize_shared_bytes(max_frame_w, mask_w);
  reserve_dynamic_shared_memory(reinterpret_cast<const void*>(resize_masks_kernel<8>), bytes, "max_frame_size width");
  reserve_dynamic_shared_memory(reinterpret_cast<const void*>(resize_masks_kernel<1>), bytes, "max_frame_size width");
}

void resize_masks_cuda(const FrameSizes& sizes, const MaskParams& params, const Records& records, int capacity,
                       int max_frame_w, const float* lowres, uint8_t* out, void* stream) {
  const dim3 grid(kResizeBlocksPerMask, capacity);
  auto* kernel = params.bits_per_pixel == 1 ? resize_masks_kernel<1> : resize_masks_kernel<8>;
  kernel<<<grid, kThreads, resize_shared_bytes(max_frame_w, params.mask_w), static_cast<cudaStream_t>(stream)>>>(
      sizes, params, records, lowres, out, max_frame_w);
  SEGPOST_CHECK_LAUNCH("resize_masks");
}

}  // namespace segpost

namespace segpost {

void prepare_rle_masks_cuda(int max_frame_h, int max_frame_w, int mask_w) {
  const size_t bytes = rle_shared_bytes(max_frame_h, max_frame_w, mask_w);
  reserve_dynamic_shared_memory(reinterpret_cast<const void*>(rle_columns_kernel<false>), bytes, "max_frame_size height");
  reserve_dynamic_shared_memory(reinterpret_cast<const void*>(rle_columns_kernel<true>), bytes, "max_frame_size height");
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
  rle_copy_kernel<<<kRleCopyBlocks, kThreads, 0, s>>>(records.header, scratch.counts, counts);
  SEGPOST_CHECK_LAUNCH("rle (copy)");
}

}  // namespace segpost
