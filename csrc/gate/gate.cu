#include "cuda_check.h"
#include "gate.h"
#include "warp.h"

namespace segpost {
namespace {

constexpr int kThreads = 256;

// Sum of `value` over the block (kThreads threads); the result is valid in thread 0.
template <typename T>
__device__ T block_sum(T value, T* scratch) {
  for (int d = 16; d > 0; d >>= 1) value += __shfl_xor_sync(0xffffffffu, value, d);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  T total = 0;
  if (threadIdx.x == 0) {
    for (int w = 0; w < kThreads / 32; ++w) total += scratch[w];
  }
  __syncthreads();
  return total;
}

// A block per (cell, frame): its threads walk the cell's pixels row-major, so a warp reads
// neighbouring pixels of one row.
__global__ void __launch_bounds__(kThreads) grid_kernel(GateBatch batch, GateGrid grid, int32_t* grids) {
  __shared__ uint32_t scratch[kThreads / 32];
  const int cell = blockIdx.x, b = blockIdx.y;
  const int i = cell / grid.cols, j = cell % grid.cols;
  const FrameSource f = batch.frames[b];
  const int y0 = cell_start(i, grid.rows, f.height), y1 = cell_start(i + 1, grid.rows, f.height);
  const int x0 = cell_start(j, grid.cols, f.width), x1 = cell_start(j + 1, grid.cols, f.width);
  const int w = x1 - x0, count = (y1 - y0) * w;
  uint32_t sum = 0;
  for (int k = threadIdx.x; k < count; k += kThreads) sum += gate_luma(f, x0 + k % w, y0 + k / w);
  sum = block_sum(sum, scratch);
  if (threadIdx.x == 0) grids[static_cast<int64_t>(b) * grid.rows * grid.cols + cell] = cell_level(sum, count);
}

// A block per frame: the two grids' totals, then the changed cells.
__global__ void __launch_bounds__(kThreads) compare_kernel(const int32_t* grids, const int32_t* refs,
                                                           const int32_t* ref_index, GateGrid grid,
                                                           int32_t threshold, int32_t* changed) {
  __shared__ long long scratch[kThreads / 32];
  __shared__ long long totals[2];
  const int b = blockIdx.x;
  const int32_t cells = grid.rows * grid.cols;
  const int r = ref_index[b];
  if (r < 0) {
    if (threadIdx.x == 0) changed[b] = cells;
    return;
  }
  const int32_t* cur = grids + static_cast<int64_t>(b) * cells;
  const int32_t* ref = refs + static_cast<int64_t>(r) * cells;
  long long cur_sum = 0, ref_sum = 0;
  for (int c = threadIdx.x; c < cells; c += kThreads) {
    cur_sum += cur[c];
    ref_sum += ref[c];
  }
  cur_sum = block_sum(cur_sum, scratch);
  ref_sum = block_sum(ref_sum, scratch);
  if (threadIdx.x == 0) {
    totals[0] = cur_sum;
    totals[1] = ref_sum;
  }
  __syncthreads();
  long long n = 0;
  for (int c = threadIdx.x; c < cells; c += kThreads) n += cell_changed(cur[c], ref[c], totals[0], totals[1], cells, threshold);
  n = block_sum(n, scratch);
  if (threadIdx.x == 0) changed[b] = static_cast<int32_t>(n);
}

}  // namespace

void gate_grid_cuda(const GateBatch& batch, GateGrid grid, int32_t* grids, void* stream) {
  grid_kernel<<<dim3(grid.rows * grid.cols, batch.num_frames), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      batch, grid, grids);
  SEGPOST_CHECK_LAUNCH("gate (grid)");
}

void gate_compare_cuda(const int32_t* grids, const int32_t* refs, const int32_t* ref_index, int num_frames,
                       GateGrid grid, int32_t threshold, int32_t* changed, void* stream) {
  compare_kernel<<<num_frames, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(grids, refs, ref_index, grid,
                                                                                  threshold, changed);
  SEGPOST_CHECK_LAUNCH("gate (compare)");
}

}  // namespace segpost
