#include "masks.h"

#include <cstring>

namespace segpost {

void gather_lowres(const Batch& batch, const MaskParams& params, const Records& records, int32_t k, float* lowres) {
  const int64_t hw = static_cast<int64_t>(params.mask_h) * params.mask_w;
  const int64_t src = (static_cast<int64_t>(records.frame[k]) * params.num_queries + records.query[k]) * hw;
  for (int64_t p = 0; p < hw; ++p) {
    lowres[p] = mask_source_value(load_as_float(batch.masks, src + p, batch.masks_dtype), params.mode);
  }
}

void resize_binarize_cpu(const float* lowres, const MaskParams& params, int height, int width, Window window,
                         LinearTap* x_taps, uint8_t* out) {
  const int mask_h = params.mask_h, mask_w = params.mask_w;
  const double scale_y = resize_scale(mask_h, height), scale_x = resize_scale(mask_w, width);
  for (int x = 0; x < window.w; ++x) x_taps[x] = linear_tap(window.x0 + x, scale_x, mask_w);
  const bool packed = params.bits_per_pixel == 1;
  if (packed) std::memset(out, 0, static_cast<size_t>(mask_payload_bytes(window.h, window.w, 1)));
  int64_t p = 0;
  for (int y = 0; y < window.h; ++y) {
    const LinearTap ty = linear_tap(window.y0 + y, scale_y, mask_h);
    for (int x = 0; x < window.w; ++x, ++p) {
      const uint8_t bit = bilinear(lowres, mask_w, ty, x_taps[x]) > params.threshold ? 1 : 0;
      if (packed) {
        out[p >> 3] |= static_cast<uint8_t>(bit << packed_bit_shift(p));
      } else {
        out[p] = bit;
      }
    }
  }
}

void gather_resize_masks_cpu(const Batch& batch, const MaskParams& params, const Records& records,
                             float* lowres, LinearTap* x_taps, uint8_t* out) {
  for (int32_t k = 0; k < records.header->total; ++k) {
    const int f = records.frame[k];
    gather_lowres(batch, params, records, k, lowres);
    const int height = batch.sizes.height[f], width = batch.sizes.width[f];
    uint8_t* dst = out + records.mask_offset[k];
    Window window{0, 0, width, height};
    if (params.form == MaskForm::LowRes) {
      window = Window{0, 0, params.mask_w, params.mask_h};
      auto* half = reinterpret_cast<uint16_t*>(dst);
      for (int64_t p = 0; p < static_cast<int64_t>(params.mask_h) * params.mask_w; ++p) half[p] = lowres_half_bits(lowres[p]);
    } else {
      if (params.form == MaskForm::Crop) window = crop_window(records.box + 4 * k, width, height);
      resize_binarize_cpu(lowres, params, height, width, window, x_taps, dst);
    }
    for (int c = 0; c < 4; ++c) records.window[4 * k + c] = (&window.x0)[c];
  }
}

}  // namespace segpost
