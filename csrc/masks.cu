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

// Walks a mask's pixels in row-major order, producing each binarized pixel. It reloads its four
// source values only when the source column or row changes (several output pixels share them).
struct PixelWalker {
  const float* src;
  const LinearTap* x_taps;
  int src_w, src_h, width, height;
  double scale_y;
  float threshold;
  int x, y, loaded;
  LinearTap ty;
  const float* row0;
  const float* row1;
  float a, b, c, d;

  __device__ void start(int64_t p) {
    y = static_cast<int>(p / width);
    x = static_cast<int>(p - static_cast<int64_t>(y) * width);
    enter_row();
  }

  __device__ void enter_row() {
    ty = linear_tap(y, scale_y, src_h);
    row0 = src + static_cast<int64_t>(ty.i0) * src_w;
    row1 = src + static_cast<int64_t>(ty.i1) * src_w;
    loaded = -1;
  }

  __device__ uint32_t next() {
    uint32_t bit = 0;
    if (y < height) {
      const LinearTap tx = x_taps[x];
      if (tx.i0 != loaded) {
        loaded = tx.i0;
        a = row0[tx.i0];
        b = row0[tx.i1];
        c = row1[tx.i0];
        d = row1[tx.i1];
      }
      bit = bilinear_corners(a, b, c, d, ty, tx) > threshold ? 1u : 0u;
    }
    if (++x == width) {
      x = 0;
      ++y;
      enter_row();
    }
    return bit;
  }
};

// Each thread writes 16 bytes of a mask with one store (masks start 16-byte aligned), which
// keeps the stores coalesced also when `out` is mapped host memory. kBits = 8: 16 pixels as
// uint8 0/1; kBits = 1: 128 pixels packed. The column taps of the frame's width are computed
// once per block into shared memory.
template <int kBits>
__global__ void __launch_bounds__(kThreads)
    resize_masks_kernel(FrameSizes sizes, MaskParams params, Records records, const float* lowres,
                        uint8_t* out) {
  extern __shared__ LinearTap x_taps[];
  constexpr int kPixelsPerWord = 32 / kBits;
  const int k = blockIdx.y;
  if (k >= records.header->total) return;
  const int f = records.frame[k];
  const int height = sizes.height[f], width = sizes.width[f];
  const int64_t payload = mask_payload_bytes(height, width, kBits);
  const int64_t chunks = (payload + 15) / 16;
  const double scale_x = resize_scale(params.mask_w, width);
  for (int x = threadIdx.x; x < width; x += blockDim.x) x_taps[x] = linear_tap(x, scale_x, params.mask_w);
  __syncthreads();
  PixelWalker walker{};
  walker.src = lowres + k * static_cast<int64_t>(params.mask_h) * params.mask_w;
  walker.x_taps = x_taps;
  walker.src_w = params.mask_w;
  walker.src_h = params.mask_h;
  walker.width = width;
  walker.height = height;
  walker.scale_y = resize_scale(params.mask_h, height);
  walker.threshold = params.threshold;
  uint8_t* dst = out + records.mask_offset[k];
  for (int64_t chunk = blockIdx.x * blockDim.x + threadIdx.x; chunk < chunks; chunk += gridDim.x * blockDim.x) {
    walker.start(chunk * 16 * 8 / kBits);
    uint32_t words[4];
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      uint32_t word = 0;
#pragma unroll
      for (int t = 0; t < kPixelsPerWord; ++t) {
        const int shift = kBits == 8 ? 8 * t : 8 * (t / 8) + packed_bit_shift(t);
        word |= walker.next() << shift;
      }
      words[w] = word;
    }
    const int64_t byte0 = chunk * 16;
    if (byte0 + 16 <= payload) {
      *reinterpret_cast<uint4*>(dst + byte0) = make_uint4(words[0], words[1], words[2], words[3]);
    } else {
      for (int i = 0; byte0 + i < payload; ++i) dst[byte0 + i] = static_cast<uint8_t>(words[i / 4] >> (8 * (i % 4)));
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
  for (const void* kernel : {reinterpret_cast<const void*>(resize_masks_kernel<8>),
                             reinterpret_cast<const void*>(resize_masks_kernel<1>)}) {
    SEGPOST_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)),
                       "resize_masks setup");
  }
}

void resize_masks_cuda(const FrameSizes& sizes, const MaskParams& params, const Records& records, int capacity,
                       int max_frame_w, const float* lowres, uint8_t* out, void* stream) {
  const dim3 grid(kResizeBlocksPerMask, capacity);
  auto* kernel = params.bits_per_pixel == 1 ? resize_masks_kernel<1> : resize_masks_kernel<8>;
  kernel<<<grid, kThreads, resize_shared_bytes(max_frame_w), static_cast<cudaStream_t>(stream)>>>(sizes, params, records,
                                                                                                 lowres, out);
  SEGPOST_CHECK_LAUNCH("resize_masks");
}

}  // namespace segpost
