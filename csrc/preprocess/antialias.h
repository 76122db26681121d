// Antialiased bilinear resampling of uint8 images, as SAM3's reference processor does it
// (transformers' Sam3ImageProcessor resizes the uint8 image with torchvision, i.e. torch's
// interpolate(mode="bilinear", antialias=True) on uint8, PIL's algorithm): a triangle filter whose
// support grows with the downscale factor, weights normalized in double, then rounded to
// fixed point at the largest precision under which the axis's largest weight fits 15 bits;
// horizontal pass first, rounded to uint8, then the vertical pass. Bit-exact with torch on the CPU.
#pragma once

#include "common.h"

namespace segpost {

struct AaAxis {
  int32_t in_size;
  double scale;     // in / out (torch's area_pixel_compute_scale, align_corners=False)
  double support;   // scale when downscaling, 1 when upscaling
  double invscale;  // 1 / scale when downscaling, 1 when upscaling
};

SEGPOST_HD AaAxis aa_axis(int in_size, int out_size) {
  const double scale = static_cast<double>(in_size) / out_size;
  return AaAxis{in_size, scale, scale >= 1.0 ? scale : 1.0, scale >= 1.0 ? 1.0 / scale : 1.0};
}

// Most taps any output sample of this axis reads.
SEGPOST_HD int aa_max_taps(int in_size, int out_size) {
  return static_cast<int>(ceil(aa_axis(in_size, out_size).support)) * 2 + 1;
}

// Output sample i reads source samples first .. first + count - 1; returns count.
SEGPOST_HD int aa_window(const AaAxis& a, int i, int* first) {
  const double center = a.scale * (i + 0.5);
  const int64_t lo = static_cast<int64_t>(center - a.support + 0.5);  // truncation, as torch's casts
  const int64_t hi = static_cast<int64_t>(center + a.support + 0.5);
  *first = static_cast<int>(lo > 0 ? lo : 0);
  return static_cast<int>((hi < a.in_size ? hi : a.in_size) - *first);
}

// The triangle filter at tap j of output sample i (not yet normalized).
SEGPOST_HD double aa_filter(const AaAxis& a, int i, int first, int j) {
  const double x = (j + first - a.scale * (i + 0.5) + 0.5) * a.invscale;
  const double magnitude = x < 0 ? -x : x;
  return magnitude < 1.0 ? 1.0 - magnitude : 0.0;
}

// Normalized weight of tap j, given the sum of the filter over the window.
SEGPOST_HD double aa_weight(const AaAxis& a, int i, int first, int j, double total) {
  const double w = aa_filter(a, i, first, j);
  return total != 0.0 ? w / total : w;
}

SEGPOST_HD double aa_total(const AaAxis& a, int i, int first, int count) {
  double total = 0.0;
  for (int j = 0; j < count; ++j) total += aa_filter(a, i, first, j);
  return total;
}

// Fractional bits of the axis's fixed-point weights, from its largest normalized weight.
SEGPOST_HD int aa_precision(double largest_weight) {
  int precision = 0;
  for (; precision < 22; ++precision) {
    if (static_cast<int>(0.5 + largest_weight * (1 << (precision + 1))) >= (1 << 15)) break;
  }
  return precision;
}

SEGPOST_HD int32_t aa_fixed_weight(double weight, int precision) {
  const double v = weight * (1 << precision);
  return static_cast<int16_t>(v < 0 ? v - 0.5 : v + 0.5);
}

// A tap table row: first source sample, tap count, then the fixed-point weights.
constexpr int kAaTapHeader = 2;

SEGPOST_HD int aa_row_ints(int max_taps) { return kAaTapHeader + max_taps; }

// The largest normalized weight of outputs i0, i0 + step, ... of an axis (the twins split this
// loop differently and take the max of the parts).
SEGPOST_HD double aa_largest_weight(const AaAxis& a, int out_size, int i0, int step) {
  double largest = 0.0;
  for (int i = i0; i < out_size; i += step) {
    int first;
    const int count = aa_window(a, i, &first);
    const double total = aa_total(a, i, first, count);
    if (total == 0.0) continue;
    for (int j = 0; j < count; ++j) largest = fmax(largest, aa_filter(a, i, first, j) / total);
  }
  return largest;
}

// Writes output i's row of the tap table.
SEGPOST_HD void aa_write_row(const AaAxis& a, int i, int precision, int32_t* row) {
  int first;
  const int count = aa_window(a, i, &first);
  const double total = aa_total(a, i, first, count);
  row[0] = first;
  row[1] = count;
  for (int j = 0; j < count; ++j) row[kAaTapHeader + j] = aa_fixed_weight(aa_weight(a, i, first, j, total), precision);
}

// A weighted sum of uint8 levels in fixed point, rounded and clamped back to a level.
SEGPOST_HD int32_t aa_round(int32_t sum, int precision) {
  return clamp_level((sum + (1 << (precision - 1))) >> precision);
}

}  // namespace segpost
