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
  reserve_dynamic_shared_memory(reinterpret_cast<const void*>(resize_masks_kernel<8>), "segpost.Postprocessor", bytes, "max_frame_size width");
  reserve_dynamic_shared_memory(reinterpret_cast<const void*>(resize_masks_kernel<1>), "segpost.Postprocessor", bytes, "max_frame_size width");
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
