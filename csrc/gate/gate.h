// The change gate: a coarse luma grid of each camera frame (cell means, in 1/16 luma levels) and
// how many cells differ from the grid the model last saw for that camera, once the global
// brightness shift between the two is removed. Cell means average out sensor noise; removing the
// mean shift ignores slow light changes (exposure, dusk) that move every cell alike.
//
// All in integers, so the CPU twin and the kernels agree bit for bit whatever the reduction order.
#pragma once

#include "preprocess/frames.h"

namespace segpost {

// Cell means carry 4 fractional bits: a 1-level threshold is then 16 units.
constexpr int32_t kGateLevelScale = 16;

struct GateBatch {
  FrameSource frames[kMaxFrames];
  int32_t num_frames;
};

struct GateGrid {
  int32_t rows;
  int32_t cols;
};

// Luma of pixel (x, y): the Y plane of 4:2:0 frames as the decoder wrote it; BT.601 weights of
// BGR frames in 8-bit fixed point (the weights sum to 256). A camera's frames keep one format,
// so its grids are comparable.
SEGPOST_HD int32_t gate_luma(const FrameSource& f, int x, int y) {
  if (f.format == PixelFormat::BGR) {
    const uint8_t* p = f.planes[0] + y * f.pitches[0] + 3 * static_cast<int64_t>(x);
    return (29 * p[0] + 150 * p[1] + 77 * p[2] + 128) >> 8;
  }
  return f.planes[0][y * f.pitches[0] + x];
}

// Cell i of n along an axis of `size` pixels covers [cell_start(i), cell_start(i + 1)).
SEGPOST_HD int32_t cell_start(int i, int n, int size) {
  return static_cast<int32_t>(static_cast<int64_t>(i) * size / n);
}

// A cell's mean luma in 1/16 levels, rounded half up.
SEGPOST_HD int32_t cell_level(uint32_t sum, int32_t count) {
  return static_cast<int32_t>((static_cast<int64_t>(sum) * kGateLevelScale + count / 2) / count);
}

// Whether a cell changed: |(cur - ref) - (mean(cur) - mean(ref))| > threshold, scaled by the
// number of cells so the means stay integers (totals are the sums of all cells' levels).
SEGPOST_HD bool cell_changed(int32_t cur, int32_t ref, int64_t cur_total, int64_t ref_total, int32_t cells,
                             int32_t threshold) {
  int64_t d = static_cast<int64_t>(cur - ref) * cells - (cur_total - ref_total);
  if (d < 0) d = -d;
  return d > static_cast<int64_t>(threshold) * cells;
}

// grids: [num_frames, rows * cols] cell levels of each frame.
void gate_grid_cpu(const GateBatch& batch, GateGrid grid, int32_t* grids);
// changed[b]: how many cells of grids[b] changed against refs[ref_index[b]] (ref_index[b] < 0: no
// reference yet, every cell counts as changed). threshold in 1/16 levels.
void gate_compare_cpu(const int32_t* grids, const int32_t* refs, const int32_t* ref_index, int num_frames,
                      GateGrid grid, int32_t threshold, int32_t* changed);

#if SEGPOST_WITH_CUDA
void gate_grid_cuda(const GateBatch& batch, GateGrid grid, int32_t* grids, void* stream);
// ref_index and changed are device arrays.
void gate_compare_cuda(const int32_t* grids, const int32_t* refs, const int32_t* ref_index, int num_frames,
                       GateGrid grid, int32_t threshold, int32_t* changed, void* stream);
#endif

}  // namespace segpost
