#include "cuda_check.h"
#include "masks.h"

#include <stdexcept>
#include <string>

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
// The column taps of the mask's width are computed once per block into shared memory, and a
// thread reloads its four source values only when the source column or row changes.
__global__ void __launch_bounds__(kThreads)
    resize_masks_kernel(FrameSizes sizes, MaskParams params, Records records, const float* lowres,
                        uint8_t* out) {
  extern __shared__ LinearTap x_taps[];
  const int k = blockIdx.y;
  if (k >= records.header->total) return;
  const int f = records.frame[k];
  const int height = sizes.height[f], width = sizes.width[f];
  const int64_t n = static_cast<int64_t>(height) * width;
  const int64_t chunks = (n + kPixelsPerThread - 1) / kPixelsPerThread;
  const double scale_y = resize_scale(params.mask_h, height);
  const double scale_x = resize_scale(params.mask_w, width);
  for (int x = threadIdx.x; x < width; x += blockDim.x) x_taps[x] = linear_tap(x, scale_x, params.mask_w);
  __syncthreads();
  const int src_w = params.mask_w;
  const float* src = lowres + k * static_cast<int64_t>(params.mask_h) * src_w;
  uint8_t* dst = out + records.mask_offset[k];
  for (int64_t c = blockIdx.x * blockDim.x + threadIdx.x; c < chunks; c += gridDim.x * blockDim.x) {
    const int64_t p = c * kPixelsPerThread;
    int y = static_cast<int>(p / width);
    int x = static_cast<int>(p - static_cast<int64_t>(y) * width);
    LinearTap ty = linear_tap(y, scale_y, params.mask_h);
    const float* row0 = src + static_cast<int64_t>(ty.i0) * src_w;
    const float* row1 = src + static_cast<int64_t>(ty.i1) * src_w;
    int loaded = -1;
    float a = 0.0f, b = 0.0f, cc = 0.0f, d = 0.0f;
    uint32_t words[4] = {0, 0, 0, 0};
#pragma unroll
    for (int t = 0; t < kPixelsPerThread; ++t) {
      if (y < height) {
        const LinearTap tx = x_taps[x];
        if (tx.i0 != loaded) {
          loaded = tx.i0;
          a = row0[tx.i0];
          b = row0[tx.i1];
          cc = row1[tx.i0];
          d = row1[tx.i1];
        }
        const uint32_t bit = bilinear_corners(a, b, cc, d, ty, tx) > params.threshold ? 1u : 0u;
        words[t / 4] |= bit << (8 * (t % 4));
      }
      if (++x == width) {
        x = 0;
        ++y;
        ty = linear_tap(y, scale_y, params.mask_h);
        row0 = src + static_cast<int64_t>(ty.i0) * src_w;
        row1 = src + static_cast<int64_t>(ty.i1) * src_w;
        loaded = -1;
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

size_t resize_shared_bytes(int max_frame_w) { return static_cast<size_t>(max_frame_w) * sizeof(LinearTap); }

void prepare_resize_masks_cuda(int max_frame_w) {
  const size_t bytes = resize_shared_bytes(max_frame_w);
  int device = 0, limit = 0;
  SEGPOST_CUDA_CHECK(cudaGetDevice(&device), "resize_masks setup");
  SEGPOST_CUDA_CHECK(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device), "resize_masks setup");
  if (bytes > static_cast<size_t>(limit)) {
    throw std::invalid_argument("segpost.Postprocessor: max_frame_size width " + std::to_string(max_frame_w) +
                                " needs " + std::to_string(bytes) + " bytes of shared memory; this GPU has " +
                                std::to_string(limit));
  }
  SEGPOST_CUDA_CHECK(cudaFuncSetAttribute(resize_masks_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(bytes)),
                     "resize_masks setup");
}

void resize_masks_cuda(const FrameSizes& sizes, const MaskParams& params, const Records& records, int capacity,
                       int max_frame_w, const float* lowres, uint8_t* out, void* stream) {
  const dim3 grid(kResizeBlocksPerMask, capacity);
  resize_masks_kernel<<<grid, kThreads, resize_shared_bytes(max_frame_w), static_cast<cudaStream_t>(stream)>>>(
      sizes, params, records, lowres, out);
  SEGPOST_CHECK_LAUNCH("resize_masks");
}

}  // namespace segpost
