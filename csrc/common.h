// Per-element math shared by the CUDA kernels and their C++ CPU twins.
// One definition of scoring, ranking, bilinear sampling and box scaling, so the twins cannot
// drift apart (torchvision keeps two copies of roi_align's interpolation; we keep one).
#pragma once

#include <cstdint>
#include <cstring>
#include <math.h>

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#define SEGPOST_HD __host__ __device__ __forceinline__
#else
#define SEGPOST_HD inline
#endif

namespace segpost {

enum class DType : int32_t { Float32 = 0, Float16 = 1 };
enum class MaskMode : int32_t { Logit = 0, Probability = 1 };

// Frame sizes travel as a kernel argument (copied at launch), so a batch never needs an
// upload that could race with the next one.
constexpr int kMaxFrames = 64;
// Each mask starts on a 16-byte boundary so the resize kernel can store 16 pixels at once.
constexpr int64_t kMaskAlign = 16;
// Mask logits are clamped to +-kMaskLogitLimit (NaN counts as background) so that a zero
// bilinear weight never meets an infinity (0 * inf = NaN).
constexpr float kMaskLogitLimit = 1e30f;

struct FrameSizes {
  int32_t height[kMaxFrames];
  int32_t width[kMaxFrames];
};

SEGPOST_HD float half_bits_to_float(uint16_t h) {
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half(h));
#else
  // IEEE 754 binary16 -> binary32; exact, including subnormals, infinities and NaN.
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  uint32_t bits;
  if (exponent == 0) {
    if (mantissa == 0) {
      bits = sign;
    } else {
      int shift = -1;
      do {
        ++shift;
        mantissa <<= 1;
      } while (!(mantissa & 0x400u));
      bits = sign | (static_cast<uint32_t>(112 - shift) << 23) | ((mantissa & 0x3ffu) << 13);
    }
  } else if (exponent == 31) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  }
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
#endif
}

SEGPOST_HD float load_as_float(const void* data, int64_t index, DType dtype) {
  return dtype == DType::Float16 ? half_bits_to_float(static_cast<const uint16_t*>(data)[index])
                                 : static_cast<const float*>(data)[index];
}

SEGPOST_HD float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// score = sigmoid(logit) * sigmoid(presence), as transformers' Sam3 post-processing.
SEGPOST_HD float detection_score(float logit, float presence_logit, bool has_presence) {
  const float s = sigmoid(logit);
  return has_presence ? s * sigmoid(presence_logit) : s;
}

// The one ordering used everywhere: higher score first, ties broken by lower flat index.
SEGPOST_HD bool ranks_before(float score_a, int64_t index_a, float score_b, int64_t index_b) {
  return score_a > score_b || (score_a == score_b && index_a < index_b);
}

SEGPOST_HD float finite_mask_logit(float v) {
  if (v != v) return -kMaskLogitLimit;
  return fminf(fmaxf(v, -kMaskLogitLimit), kMaskLogitLimit);
}

// The value that gets interpolated: the logit itself, or its sigmoid (transformers' order).
SEGPOST_HD float mask_source_value(float raw, MaskMode mode) {
  const float v = finite_mask_logit(raw);
  return mode == MaskMode::Probability ? sigmoid(v) : v;
}

// cv2's scale for INTER_LINEAR: 1 / (dst / src), computed in double as cv2 does.
SEGPOST_HD double resize_scale(int src_len, int dst_len) {
  return 1.0 / (static_cast<double>(dst_len) / src_len);
}

// One axis of a half-pixel-centre linear resize with replicated borders (cv2.INTER_LINEAR,
// torch F.interpolate(align_corners=False)): value = s[i0] * (1 - w1) + s[i1] * w1.
struct LinearTap {
  int32_t i0;
  int32_t i1;
  float w1;
};

SEGPOST_HD int32_t next_index(int32_t i0, int src_len) { return i0 + 1 < src_len ? i0 + 1 : src_len - 1; }

SEGPOST_HD LinearTap linear_tap(int dst_index, double scale, int src_len) {
  const float pos = static_cast<float>((dst_index + 0.5) * scale - 0.5);
  int i0 = static_cast<int>(floorf(pos));
  float w1 = pos - static_cast<float>(i0);
  if (i0 < 0) {
    i0 = 0;
    w1 = 0.0f;
  }
  if (i0 >= src_len - 1) {
    i0 = src_len - 1;
    w1 = 0.0f;
  }
  return LinearTap{i0, next_index(i0, src_len), w1};
}

// Vertical pass first (blend the two source rows), then horizontal. The separable order lets
// the GPU blend a source row once per output row and share it across the row's pixels; cv2
// blends horizontally first, which differs only in the last bit of rounding.
// One explicit fused multiply-add (correctly rounded on both sides, so the twins agree bit for
// bit; the build turns off implicit contraction).
SEGPOST_HD float blend(float first, float second, float w0, float w1) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(second, w1, first * w0);
#else
  return fmaf(second, w1, first * w0);
#endif
}

SEGPOST_HD float blend(float first, float second, float w1) { return blend(first, second, 1.0f - w1, w1); }

// The vertical pass at one source column (rows `row_stride` apart in memory).
SEGPOST_HD float blend_rows(const float* column, int64_t row_stride, LinearTap ty) {
  return blend(column[ty.i0 * row_stride], column[ty.i1 * row_stride], ty.w1);
}

SEGPOST_HD float bilinear(const float* src, int src_w, LinearTap ty, LinearTap tx) {
  return blend(blend_rows(src + tx.i0, src_w, ty), blend_rows(src + tx.i1, src_w, ty), tx.w1);
}

// binary32 -> binary16 bits, round to nearest even (as __float2half_rn), NaN kept, overflow to inf.
SEGPOST_HD uint16_t float_to_half_bits(float value) {
#if defined(__CUDA_ARCH__)
  return __half_as_ushort(__float2half_rn(value));
#else
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude >= 0x7f800000u) {  // inf or NaN
    return static_cast<uint16_t>(sign | 0x7c00u | (magnitude > 0x7f800000u ? 0x200u : 0u));
  }
  if (magnitude >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds past 65504
  if (magnitude < 0x38800000u) {  // below the smallest normal half: a subnormal or zero
    if (magnitude < 0x33000000u) return sign;  // below half the smallest subnormal
    const uint32_t mantissa = (magnitude & 0x7fffffu) | 0x800000u;
    const int shift = 126 - static_cast<int>(magnitude >> 23);  // 14 .. 24
    const uint32_t half = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1u);
    const uint32_t halfway = 1u << (shift - 1);
    const uint32_t rounded = half + ((rest > halfway || (rest == halfway && (half & 1u))) ? 1u : 0u);
    return static_cast<uint16_t>(sign | rounded);
  }
  const uint32_t rebased = magnitude - 0x38000000u;  // exponent bias 127 -> 15
  const uint32_t half = rebased >> 13;
  const uint32_t rest = rebased & 0x1fffu;
  const uint32_t rounded = half + ((rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ? 1u : 0u);
  return static_cast<uint16_t>(sign | rounded);
#endif
}

SEGPOST_HD int32_t clamp_level(int32_t v) { return v < 0 ? 0 : v > 255 ? 255 : v; }

// A uint8 level (possibly interpolated) -> the vision encoder's [-1, 1], as transformers'
// processors compute it: (x - 0.5 * 255) / (0.5 * 255) in float32.
SEGPOST_HD float normalize_level(float level) { return (level - 127.5f) / 127.5f; }

// Normalized coordinate -> pixels, clipped to [0, extent]; NaN becomes 0.
SEGPOST_HD float scale_box_coord(float normalized, float extent) {
  return fminf(fmaxf(normalized * extent, 0.0f), extent);
}

// A mask's bytes: one per pixel, or one bit per pixel (numpy.packbits of the row-major mask).
SEGPOST_HD int64_t mask_payload_bytes(int height, int width, int bits_per_pixel) {
  return (static_cast<int64_t>(height) * width * bits_per_pixel + 7) / 8;
}

SEGPOST_HD int64_t mask_stride_bytes(int height, int width, int bits_per_pixel) {
  return (mask_payload_bytes(height, width, bits_per_pixel) + kMaskAlign - 1) / kMaskAlign * kMaskAlign;
}

// What stage 2 writes for each kept mask (codes shared with python/segpost/postprocess.py).
enum class MaskForm : int32_t { Frame = 0, Crop = 1, LowRes = 2 };

// The pixels a mask covers: the whole frame, or (Crop) its box rounded outwards to whole pixels.
struct Window {
  int32_t x0, y0, w, h;
};

SEGPOST_HD Window crop_window(const float* box, int width, int height) {
  auto clamp = [](float v, int hi) { return v < 0.0f ? 0 : v > static_cast<float>(hi) ? hi : static_cast<int>(v); };
  const int x0 = clamp(floorf(box[0]), width), y0 = clamp(floorf(box[1]), height);
  const int x1 = clamp(ceilf(box[2]), width), y1 = clamp(ceilf(box[3]), height);
  return Window{x0, y0, x1 > x0 ? x1 - x0 : 0, y1 > y0 ? y1 - y0 : 0};
}

// LowRes values are stored as fp16: clamped to its finite range so that a later resize never
// blends infinities into NaN.
SEGPOST_HD uint16_t lowres_half_bits(float value) {
  const float limit = 65504.0f;
  return float_to_half_bits(value < -limit ? -limit : value > limit ? limit : value);
}

// Bit of pixel p within its byte when packed: most significant first (packbits' "big" order).
SEGPOST_HD int packed_bit_shift(int64_t p) { return 7 - static_cast<int>(p & 7); }

}  // namespace segpost
