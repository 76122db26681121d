#include "cuda_check.h"
#include "preprocess.h"

namespace segpost {
namespace {

constexpr int kThreads = 128;

// One thread per output pixel (all three channels); a block covers part of one output row of one
// frame, so the three plane writes are coalesced.
__global__ void __launch_bounds__(kThreads)
    preprocess_kernel(PreprocessBatch batch, int out_h, int out_w, DType out_dtype, void* out) {
  const int x = blockIdx.x * blockDim.x + threadIdx.x;
  const int y = blockIdx.y;
  const int b = blockIdx.z;
  if (x >= out_w) return;
  const FrameSource frame = batch.frames[b];
  const LinearTap ty = linear_tap(y, resize_scale(frame.height, out_h), frame.height);
  const LinearTap tx = linear_tap(x, resize_scale(frame.width, out_w), frame.width);
  write_preprocessed_pixel(frame, ty, tx, b, y, x, out_h, out_w, out_dtype, out);
}

}  // namespace

void preprocess_cuda(const PreprocessBatch& batch, int out_h, int out_w, DType out_dtype, void* out, void* stream) {
  const dim3 grid((out_w + kThreads - 1) / kThreads, out_h, batch.num_frames);
  preprocess_kernel<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(batch, out_h, out_w, out_dtype, out);
  SEGPOST_CHECK_LAUNCH("preprocess");
}

}  // namespace segpost
