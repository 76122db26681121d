// Camera frames (BGR, NV12 or I420; each of its own size) -> the vision encoder's input
// [B, 3, out_h, out_w] (RGB, normalized to [-1, 1] as transformers does), fp32 or fp16.
// Two resize filters:
//   Antialias: the model's reference processor (antialias.h): two uint8 passes, bit-exact.
//   Bilinear:  half-pixel bilinear in float (cv2.INTER_LINEAR on float input), one fused pass.
#pragma once

#include "antialias.h"
#include "frames.h"

namespace segpost {

enum class ResizeFilter : int32_t { Antialias = 0, Bilinear = 1 };

// Travels as a kernel argument, so a batch needs no upload of its own.
struct PreprocessBatch {
  FrameSource frames[kMaxFrames];
  int32_t num_frames;
};

struct PreprocessOutput {
  void* data;  // [B, 3, height, width]
  int32_t height;
  int32_t width;
  DType dtype;
};

// Scratch of the antialias filter, allocated once by the caller:
//   taps: per frame and axis (0: rows, 1: columns), a row of aa_row_ints(max_taps) ints per
//         output sample after one header row holding the axis's precision;
//   horizontal: the first pass, [B, 3, max_frame_h, out_w] uint8.
struct AntialiasScratch {
  int32_t* taps;
  int32_t max_taps;
  int32_t max_out;  // max(out_h, out_w)
  uint8_t* horizontal;
  int32_t max_frame_h;
};

SEGPOST_HD int32_t* aa_axis_table(const AntialiasScratch& s, int b, int axis) {
  return s.taps + static_cast<int64_t>(2 * b + axis) * (s.max_out + 1) * aa_row_ints(s.max_taps);
}

SEGPOST_HD uint8_t* aa_plane(const AntialiasScratch& s, int b, int c, int out_w) {
  return s.horizontal + (static_cast<int64_t>(b) * 3 + c) * s.max_frame_h * out_w;
}

SEGPOST_HD void store_output(const PreprocessOutput& out, int b, int c, int y, int x, float value) {
  const int64_t index = ((static_cast<int64_t>(b) * 3 + c) * out.height + y) * out.width + x;
  if (out.dtype == DType::Float16) {
    static_cast<uint16_t*>(out.data)[index] = float_to_half_bits(value);
  } else {
    static_cast<float*>(out.data)[index] = value;
  }
}

// Bilinear: output pixel (x, y) of frame b, all three channels, from four source pixels.
SEGPOST_HD void write_bilinear_pixel(const FrameSource& frame, LinearTap ty, LinearTap tx, int b, int y, int x,
                                     const PreprocessOutput& out) {
  const Rgb p00 = fetch_rgb(frame, tx.i0, ty.i0), p01 = fetch_rgb(frame, tx.i1, ty.i0);
  const Rgb p10 = fetch_rgb(frame, tx.i0, ty.i1), p11 = fetch_rgb(frame, tx.i1, ty.i1);
  for (int c = 0; c < 3; ++c) {
    const float left = blend(static_cast<float>(channel(p00, c)), static_cast<float>(channel(p10, c)), ty.w1);
    const float right = blend(static_cast<float>(channel(p01, c)), static_cast<float>(channel(p11, c)), ty.w1);
    store_output(out, b, c, y, x, normalize_level(blend(left, right, tx.w1)));
  }
}

// Antialias, first pass: source row y, output column x of frame b, all three channels.
// row_pixel(j) is pixel j of the source row (the GPU converts each pixel of a row once, into
// shared memory: an NV12 pixel costs more to convert than to weigh, and feeds several columns).
template <typename RowPixel>
SEGPOST_HD void write_horizontal_sample(RowPixel row_pixel, const int32_t* column_taps, int precision, int b, int y,
                                        int x, int out_w, const AntialiasScratch& s) {
  int32_t sum[3] = {0, 0, 0};
  const int first = column_taps[0], count = column_taps[1];
  for (int j = 0; j < count; ++j) {
    const Rgb p = row_pixel(first + j);
    const int32_t w = column_taps[kAaTapHeader + j];
    sum[0] += p.r * w;
    sum[1] += p.g * w;
    sum[2] += p.b * w;
  }
  for (int c = 0; c < 3; ++c) aa_plane(s, b, c, out_w)[static_cast<int64_t>(y) * out_w + x] = static_cast<uint8_t>(aa_round(sum[c], precision));
}

// Antialias, second pass: output pixel (x, y) of frame b, channel c.
SEGPOST_HD void write_vertical_sample(const int32_t* row_taps, int precision, int b, int c, int y, int x,
                                      const AntialiasScratch& s, const PreprocessOutput& out) {
  const uint8_t* plane = aa_plane(s, b, c, out.width);
  int32_t sum = 0;
  const int first = row_taps[0], count = row_taps[1];
  for (int j = 0; j < count; ++j) sum += plane[static_cast<int64_t>(first + j) * out.width + x] * row_taps[kAaTapHeader + j];
  store_output(out, b, c, y, x, normalize_level(static_cast<float>(aa_round(sum, precision))));
}

void preprocess_cpu(const PreprocessBatch& batch, const PreprocessOutput& out, ResizeFilter filter,
                    const AntialiasScratch& scratch);

#if SEGPOST_WITH_CUDA
void preprocess_cuda(const PreprocessBatch& batch, const PreprocessOutput& out, ResizeFilter filter,
                     const AntialiasScratch& scratch, void* stream);
#endif

}  // namespace segpost
