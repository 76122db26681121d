#include "cuda_check.h"
#include "masks.h"

namespace segpost {
namespace {

constexpr int kThreads = 256;
constexpr int kGatherBlocksPerMask = 8;
// Blocks per mask for the resize; the grid's y is the capacity and blocks past the kept count
// return at once, so the launch never waits for the count to reach the host.
constexpr int kResizeBlocksPerMask = 48;
constexpr int kPixelsPerThread = 16;

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

// Each thread writes 16 consecutive pixels of a mask with one 16-byte store (masks start
// 16-byte aligned), which keeps the stores coalesced also when `out` is mapped host memory.
__global__ void __launch_bounds__(kThreads)
    resize_masks_kernel(FrameSizes sizes, MaskParams params, Records records, const float* lowres,
                        uint8_t* out) {
  const int k = blockIdx.y;
  if (k >= records.header->total) return;
  const int f = records.frame[k];
  const int height = sizes.height[f], width = sizes.width[f];
  const int64_t n = static_cast<int64_t>(height) * width;
  const int64_t chunks = (n + kPixelsPerThread - 1) / kPixelsPerThread;
  const double scale_y = resize_scale(params.mask_h, height);
  const double scale_x = resize_scale(params.mask_w, width);
  const float* src = lowres + k * static_cast<int64_t>(params.mask_h) * params.mask_w;
  uint8_t* dst = out + records.mask_offset[k];
  for (int64_t c = blockIdx.x * blockDim.x + threadIdx.x; c < chunks; c += gridDim.x * blockDim.x) {
    const int64_t p = c * kPixelsPerThread;
    int y = static_cast<int>(p / width);
    int x = static_cast<int>(p - static_cast<int64_t>(y) * width);
    LinearTap ty = linear_tap(y, scale_y, params.mask_h);
    uint32_t words[4] = {0, 0, 0, 0};
#pragma unroll
    for (int t = 0; t < kPixelsPerThread; ++t) {
      if (y < height) {
        const uint32_t bit = bilinear(src, params.mask_w, ty, linear_tap(x, scale_x, params.mask_w)) >
                                     params.threshold ? 1u : 0u;
        words[t / 4] |= bit << (8 * (t % 4));
      }
      if (++x == width) {
        x = 0;
        ++y;
        ty = linear_tap(y, scale_y, params.mask_h);
      }
    }
    if (p + kPixelsPerThread <= n) {
      *reinterpret_cast<uint4*>(dst + p) = make_uint4(words[0], words[1], words[2], words[3]);
    } else {
      for (int t = 0; p + t < n; ++t) dst[p + t] = static_cast<uint8_t>(words[t / 4] >> (8 * (t % 4)));
    }
  }
}

}  // namespace

void gather_masks_cuda(const Batch& batch, const MaskParams& params, const Records& records,
                       int capacity, float* lowres, void* stream) {
  const dim3 grid(kGatherBlocksPerMask, capacity);
  gather_masks_kernel<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(batch, params, records, lowres);
  SEGPOST_CHECK_LAUNCH("gather_masks");
}

void resize_masks_cuda(const FrameSizes& sizes, const MaskParams& params, const Records& records,
                       int capacity, const float* lowres, uint8_t* out, void* stream) {
  const dim3 grid(kResizeBlocksPerMask, capacity);
  resize_masks_kernel<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(sizes, params, records,
                                                                              lowres, out);
  SEGPOST_CHECK_LAUNCH("resize_masks");
}

}  // namespace segpost
