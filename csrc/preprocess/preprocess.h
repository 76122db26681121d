// BGR uint8 frames -> the vision encoder's input [B, 3, out_h, out_w] (RGB, x / 127.5 - 1), fp32 or
// fp16, in one pass: bilinear resize (half-pixel centres, as cv2.INTER_LINEAR on float input),
// BGR -> RGB, normalize, HWC -> CHW.
#pragma once

#include "common.h"

namespace segpost {

struct FrameSource {
  const uint8_t* bgr;  // H x W x 3, rows row_stride bytes apart
  int32_t height;
  int32_t width;
  int64_t row_stride;
};

// Travels as a kernel argument, so a batch needs no upload of its own.
struct PreprocessBatch {
  FrameSource frames[kMaxFrames];
  int32_t num_frames;
};

// Output pixel (y, x) of frame b, all three channels, as both twins write it.
SEGPOST_HD void write_preprocessed_pixel(const FrameSource& frame, LinearTap ty, LinearTap tx, int b, int y, int x,
                                         int out_h, int out_w, DType out_dtype, void* out) {
  const int64_t plane = static_cast<int64_t>(out_h) * out_w;
  for (int c = 0; c < 3; ++c) {
    const float value = preprocess_value(frame.bgr, frame.row_stride, ty, tx, c);
    const int64_t index = (static_cast<int64_t>(b) * 3 + c) * plane + static_cast<int64_t>(y) * out_w + x;
    if (out_dtype == DType::Float16) {
      static_cast<uint16_t*>(out)[index] = float_to_half_bits(value);
    } else {
      static_cast<float*>(out)[index] = value;
    }
  }
}

void preprocess_cpu(const PreprocessBatch& batch, int out_h, int out_w, DType out_dtype, void* out);

#if SEGPOST_WITH_CUDA
void preprocess_cuda(const PreprocessBatch& batch, int out_h, int out_w, DType out_dtype, void* out, void* stream);
#endif

}  // namespace segpost
