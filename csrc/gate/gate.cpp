#include "gate.h"

namespace segpost {

void gate_grid_cpu(const GateBatch& batch, GateGrid grid, int32_t* grids) {
  for (int b = 0; b < batch.num_frames; ++b) {
    const FrameSource& f = batch.frames[b];
    for (int i = 0; i < grid.rows; ++i) {
      const int y0 = cell_start(i, grid.rows, f.height), y1 = cell_start(i + 1, grid.rows, f.height);
      for (int j = 0; j < grid.cols; ++j) {
        const int x0 = cell_start(j, grid.cols, f.width), x1 = cell_start(j + 1, grid.cols, f.width);
        uint32_t sum = 0;
        for (int y = y0; y < y1; ++y) {
          for (int x = x0; x < x1; ++x) sum += gate_luma(f, x, y);
        }
        grids[(static_cast<int64_t>(b) * grid.rows + i) * grid.cols + j] = cell_level(sum, (y1 - y0) * (x1 - x0));
      }
    }
  }
}

void gate_compare_cpu(const int32_t* grids, const int32_t* refs, const int32_t* ref_index, int num_frames,
                      GateGrid grid, int32_t threshold, int32_t* changed) {
  const int32_t cells = grid.rows * grid.cols;
  for (int b = 0; b < num_frames; ++b) {
    if (ref_index[b] < 0) {
      changed[b] = cells;
      continue;
    }
    const int32_t* cur = grids + static_cast<int64_t>(b) * cells;
    const int32_t* ref = refs + static_cast<int64_t>(ref_index[b]) * cells;
    int64_t cur_total = 0, ref_total = 0;
    for (int c = 0; c < cells; ++c) {
      cur_total += cur[c];
      ref_total += ref[c];
    }
    int32_t n = 0;
    for (int c = 0; c < cells; ++c) n += cell_changed(cur[c], ref[c], cur_total, ref_total, cells, threshold);
    changed[b] = n;
  }
}

}  // namespace segpost
