#include "preprocess.h"

namespace segpost {

void preprocess_cpu(const PreprocessBatch& batch, int out_h, int out_w, DType out_dtype, void* out) {
  for (int b = 0; b < batch.num_frames; ++b) {
    const FrameSource& frame = batch.frames[b];
    const double scale_y = resize_scale(frame.height, out_h), scale_x = resize_scale(frame.width, out_w);
    for (int y = 0; y < out_h; ++y) {
      const LinearTap ty = linear_tap(y, scale_y, frame.height);
      for (int x = 0; x < out_w; ++x) {
        write_preprocessed_pixel(frame, ty, linear_tap(x, scale_x, frame.width), b, y, x, out_h, out_w, out_dtype, out);
      }
    }
  }
}

}  // namespace segpost
