#include "preprocess.h"

namespace segpost {
namespace {

// The tap table of one axis: its precision in the header row, then a row per output sample.
void build_axis_taps(int in_size, int out_size, int max_taps, int32_t* table) {
  const AaAxis a = aa_axis(in_size, out_size);
  const int precision = aa_precision(aa_largest_weight(a, out_size, 0, 1));
  table[0] = precision;
  for (int i = 0; i < out_size; ++i) aa_write_row(a, i, precision, table + (i + 1) * aa_row_ints(max_taps));
}

}  // namespace

void preprocess_cpu(const PreprocessBatch& batch, const PreprocessOutput& out, ResizeFilter filter,
                    const AntialiasScratch& scratch) {
  for (int b = 0; b < batch.num_frames; ++b) {
    const FrameSource& frame = batch.frames[b];
    if (filter == ResizeFilter::Bilinear) {
      const double scale_y = resize_scale(frame.height, out.height), scale_x = resize_scale(frame.width, out.width);
      for (int y = 0; y < out.height; ++y) {
        const LinearTap ty = linear_tap(y, scale_y, frame.height);
        for (int x = 0; x < out.width; ++x) write_bilinear_pixel(frame, ty, linear_tap(x, scale_x, frame.width), b, y, x, out);
      }
      continue;
    }
    const int row_ints = aa_row_ints(scratch.max_taps);
    int32_t* rows = aa_axis_table(scratch, b, 0);
    int32_t* columns = aa_axis_table(scratch, b, 1);
    build_axis_taps(frame.height, out.height, scratch.max_taps, rows);
    build_axis_taps(frame.width, out.width, scratch.max_taps, columns);
    for (int y = 0; y < frame.height; ++y) {
      const auto row_pixel = [&](int j) { return fetch_rgb(frame, j, y); };
      for (int x = 0; x < out.width; ++x) {
        write_horizontal_sample(row_pixel, columns + (x + 1) * row_ints, columns[0], b, y, x, out.width, scratch);
      }
    }
    for (int c = 0; c < 3; ++c) {
      for (int y = 0; y < out.height; ++y) {
        for (int x = 0; x < out.width; ++x) write_vertical_sample(rows + (y + 1) * row_ints, rows[0], b, c, y, x, scratch, out);
      }
    }
  }
}

}  // namespace segpost
