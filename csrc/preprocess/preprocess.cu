#include "cuda_check.h"
#include "preprocess.h"

namespace segpost {
namespace {

constexpr int kThreads = 128;
constexpr int kTapThreads = 1024;  // an output sample per thread up to 1024: the tables are latency-bound
constexpr int kRowThreads = 256;
constexpr size_t kDefaultSharedBytes = 48 * 1024;

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

// First pass: a block per (source row, frame). The row is converted to RGB once, into shared
// memory, then each thread weighs the taps of some output columns.
__global__ void __launch_bounds__(kRowThreads)
    aa_horizontal_kernel(PreprocessBatch batch, int out_w, AntialiasScratch scratch) {
  extern __shared__ uchar4 row[];
  const int y = blockIdx.x;
  const int b = blockIdx.y;
  const FrameSource frame = batch.frames[b];
  if (y >= frame.height) return;
  for (int x = threadIdx.x; x < frame.width; x += blockDim.x) {
    const Rgb p = fetch_rgb(frame, x, y);
    row[x] = make_uchar4(p.r, p.g, p.b, 0);
  }
  __syncthreads();
  const auto row_pixel = [&](int j) {
    const uchar4 p = row[j];
    return Rgb{p.x, p.y, p.z};
  };
  const int32_t* columns = aa_axis_table(scratch, b, 1);
  const int row_ints = aa_row_ints(scratch.max_taps);
  for (int x = threadIdx.x; x < out_w; x += blockDim.x) {
    write_horizontal_sample(row_pixel, columns + (x + 1) * row_ints, columns[0], b, y, x, out_w, scratch);
  }
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
  int tallest = 0, widest = 0;
  for (int b = 0; b < batch.num_frames; ++b) {
    tallest = batch.frames[b].height > tallest ? batch.frames[b].height : tallest;
    widest = batch.frames[b].width > widest ? batch.frames[b].width : widest;
  }
  const size_t row_bytes = static_cast<size_t>(widest) * sizeof(uchar4);
  if (row_bytes > kDefaultSharedBytes) {  // rows over 12288 pixels need the opt-in shared memory
    reserve_dynamic_shared_memory(reinterpret_cast<const void*>(aa_horizontal_kernel), "segpost.Preprocessor",
                                  row_bytes, "a frame's width (the antialias filter holds a row)");
  }
  aa_taps_kernel<<<dim3(2, batch.num_frames), kTapThreads, 0, s>>>(batch, out, scratch);
  SEGPOST_CHECK_LAUNCH("preprocess (antialias taps)");
  aa_horizontal_kernel<<<dim3(tallest, batch.num_frames), kRowThreads, row_bytes, s>>>(batch, out.width, scratch);
  SEGPOST_CHECK_LAUNCH("preprocess (antialias, horizontal pass)");
  aa_vertical_kernel<<<dim3(column_blocks, out.height, batch.num_frames), kThreads, 0, s>>>(out, scratch);
  SEGPOST_CHECK_LAUNCH("preprocess (antialias, vertical pass)");
}

}  // namespace segpost
