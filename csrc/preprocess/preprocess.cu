#include "cuda_check.h"
#include "preprocess.h"

namespace segpost {
namespace {

constexpr int kThreads = 128;
constexpr int kTapThreads = 256;

// One thread per output pixel (all three channels); a block covers part of one output row of one
// frame, so the plane writes are coalesced.
__global__ void __launch_bounds__(kThreads) bilinear_kernel(PreprocessBatch batch, PreprocessOutput out) {
  const int x = blockIdx.x * blockDim.x + threadIdx.x;
  const int y = blockIdx.y;
  const int b = blockIdx.z;
  if (x >= out.width) return;
  const FrameSource frame = batch.frames[b];
  const LinearTap ty = linear_tap(y, resize_scale(frame.height, out.height), frame.height);
  const LinearTap tx = linear_tap(x, resize_scale(frame.width, out.width), frame.width);
  write_bilinear_pixel(frame, ty, tx, b, y, x, out);
}

// A block per (axis, frame): the axis's largest weight (a block-wide max), its precision, then
// one tap-table row per output sample.
__global__ void __launch_bounds__(kTapThreads)
    aa_taps_kernel(PreprocessBatch batch, PreprocessOutput out, AntialiasScratch scratch) {
  __shared__ double largest[kTapThreads];
  const int axis = blockIdx.x, b = blockIdx.y;
  const FrameSource frame = batch.frames[b];
  const int in_size = axis == 0 ? frame.height : frame.width;
  const int out_size = axis == 0 ? out.height : out.width;
  const AaAxis a = aa_axis(in_size, out_size);
  largest[threadIdx.x] = aa_largest_weight(a, out_size, threadIdx.x, blockDim.x);
  __syncthreads();
  for (int half = blockDim.x / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) largest[threadIdx.x] = fmax(largest[threadIdx.x], largest[threadIdx.x + half]);
    __syncthreads();
  }
  const int precision = aa_precision(largest[0]);
  int32_t* table = aa_axis_table(scratch, b, axis);
  if (threadIdx.x == 0) table[0] = precision;
  const int row_ints = aa_row_ints(scratch.max_taps);
  for (int i = threadIdx.x; i < out_size; i += blockDim.x) aa_write_row(a, i, precision, table + (i + 1) * row_ints);
}

// First pass: a thread per (source row, output column) of a frame.
__global__ void __launch_bounds__(kThreads)
    aa_horizontal_kernel(PreprocessBatch batch, int out_w, AntialiasScratch scratch) {
  const int x = blockIdx.x * blockDim.x + threadIdx.x;
  const int y = blockIdx.y;
  const int b = blockIdx.z;
  const FrameSource frame = batch.frames[b];
  if (x >= out_w || y >= frame.height) return;
  const int32_t* columns = aa_axis_table(scratch, b, 1);
  write_horizontal_sample(frame, columns + (x + 1) * aa_row_ints(scratch.max_taps), columns[0], b, y, x, out_w,
                          scratch);
}

// Second pass: a thread per output pixel, all three channels.
__global__ void __launch_bounds__(kThreads)
    aa_vertical_kernel(PreprocessOutput out, AntialiasScratch scratch) {
  const int x = blockIdx.x * blockDim.x + threadIdx.x;
  const int y = blockIdx.y;
  const int b = blockIdx.z;
  if (x >= out.width) return;
  const int32_t* rows = aa_axis_table(scratch, b, 0);
  const int32_t* row = rows + (y + 1) * aa_row_ints(scratch.max_taps);
  for (int c = 0; c < 3; ++c) write_vertical_sample(row, rows[0], b, c, y, x, scratch, out);
}

}  // namespace

void preprocess_cuda(const PreprocessBatch& batch, const PreprocessOutput& out, ResizeFilter filter,
                     const AntialiasScratch& scratch, void* stream) {
  auto* s = static_cast<cudaStream_t>(stream);
  const int column_blocks = (out.width + kThreads - 1) / kThreads;
  if (filter == ResizeFilter::Bilinear) {
    bilinear_kernel<<<dim3(column_blocks, out.height, batch.num_frames), kThreads, 0, s>>>(batch, out);
    SEGPOST_CHECK_LAUNCH("preprocess (bilinear)");
    return;
  }
  int tallest = 0;
  for (int b = 0; b < batch.num_frames; ++b) tallest = batch.frames[b].height > tallest ? batch.frames[b].height : tallest;
  aa_taps_kernel<<<dim3(2, batch.num_frames), kTapThreads, 0, s>>>(batch, out, scratch);
  SEGPOST_CHECK_LAUNCH("preprocess (antialias taps)");
  aa_horizontal_kernel<<<dim3(column_blocks, tallest, batch.num_frames), kThreads, 0, s>>>(batch, out.width, scratch);
  SEGPOST_CHECK_LAUNCH("preprocess (antialias, horizontal pass)");
  aa_vertical_kernel<<<dim3(column_blocks, out.height, batch.num_frames), kThreads, 0, s>>>(out, scratch);
  SEGPOST_CHECK_LAUNCH("preprocess (antialias, vertical pass)");
}

}  // namespace segpost
