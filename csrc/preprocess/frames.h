// Camera frames as the preprocessing reads them: BGR (OpenCV), or 4:2:0 YUV as video decoders
// give it (NV12: a Y plane and an interleaved UV plane; I420: Y, U and V planes), in host or
// device memory. fetch_rgb() is the one definition of a source pixel for both twins.
#pragma once

#include "common.h"

namespace segpost {

enum class PixelFormat : int32_t { BGR = 0, NV12 = 1, I420 = 2 };
enum class YuvMatrix : int32_t { BT601 = 0, BT709 = 1 };

// Fixed-point YUV -> RGB (20 fractional bits), OpenCV's formulation:
//   y' = max(0, Y - y_offset) * cy; R = (y' + half + cvr V') >> 20, G = (y' + half + cvg V' + cug U') >> 20,
//   B = (y' + half + cub U') >> 20, with U' = U - 128, V' = V - 128, each clamped to [0, 255].
struct YuvToRgb {
  int32_t y_offset;
  int32_t cy, cvr, cvg, cug, cub;
};

constexpr int kYuvShift = 20;

// BT.601 limited range is what FFmpeg and OpenCV assume when a stream signals nothing; its
// constants are OpenCV's own (cv2.cvtColor(COLOR_YUV2RGB_NV12) bit for bit). The others follow
// from the standard's Kr, Kb: R = Y + 2 (1 - Kr) V, B = Y + 2 (1 - Kb) U,
// G = Y - 2 Kb (1 - Kb) / Kg U - 2 Kr (1 - Kr) / Kg V, luma scaled 255/219 and chroma 255/224 in
// limited range.
inline YuvToRgb yuv_to_rgb(YuvMatrix matrix, bool full_range) {
  if (matrix == YuvMatrix::BT601 && !full_range) return YuvToRgb{16, 1220542, 1673527, -852492, -409993, 2116026};
  const double kr = matrix == YuvMatrix::BT709 ? 0.2126 : 0.299;
  const double kb = matrix == YuvMatrix::BT709 ? 0.0722 : 0.114;
  const double kg = 1.0 - kr - kb;
  const double luma = full_range ? 1.0 : 255.0 / 219.0, chroma = full_range ? 1.0 : 255.0 / 224.0;
  auto fixed = [](double v) { return static_cast<int32_t>(v < 0 ? v * (1 << kYuvShift) - 0.5 : v * (1 << kYuvShift) + 0.5); };
  return YuvToRgb{full_range ? 0 : 16, fixed(luma), fixed(2.0 * (1.0 - kr) * chroma),
                  fixed(-2.0 * kr * (1.0 - kr) / kg * chroma), fixed(-2.0 * kb * (1.0 - kb) / kg * chroma),
                  fixed(2.0 * (1.0 - kb) * chroma)};
}

struct FrameSource {
  const uint8_t* planes[3];  // BGR: the pixels; NV12: Y, UV; I420: Y, U, V
  int64_t pitches[3];        // bytes between rows of each plane
  int32_t height;
  int32_t width;
  PixelFormat format;
  YuvToRgb yuv;
};

struct Rgb {
  int32_t r, g, b;
};

// The RGB levels of source pixel (x, y); 4:2:0 chroma is shared by each 2x2 block (OpenCV's
// nearest-sample upsampling).
SEGPOST_HD Rgb fetch_rgb(const FrameSource& f, int x, int y) {
  if (f.format == PixelFormat::BGR) {
    const uint8_t* p = f.planes[0] + y * f.pitches[0] + 3 * static_cast<int64_t>(x);
    return Rgb{p[2], p[1], p[0]};
  }
  int32_t u, v;
  const int cx = x >> 1, cy = y >> 1;
  if (f.format == PixelFormat::NV12) {
    const uint8_t* uv = f.planes[1] + cy * f.pitches[1] + 2 * cx;
    u = uv[0];
    v = uv[1];
  } else {
    u = f.planes[1][cy * f.pitches[1] + cx];
    v = f.planes[2][cy * f.pitches[2] + cx];
  }
  const YuvToRgb& k = f.yuv;
  const int32_t luma = f.planes[0][y * f.pitches[0] + x] - k.y_offset;
  const int32_t yy = (luma > 0 ? luma : 0) * k.cy + (1 << (kYuvShift - 1));
  u -= 128;
  v -= 128;
  return Rgb{clamp_level((yy + k.cvr * v) >> kYuvShift), clamp_level((yy + k.cvg * v + k.cug * u) >> kYuvShift),
             clamp_level((yy + k.cub * u) >> kYuvShift)};
}

SEGPOST_HD int32_t channel(const Rgb& p, int c) { return c == 0 ? p.r : c == 1 ? p.g : p.b; }

}  // namespace segpost
