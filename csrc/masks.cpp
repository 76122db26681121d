#include "masks.h"

#include <cstring>

namespace segpost {

void gather_resize_masks_cpu(const Batch& batch, const MaskParams& params, const Records& records,
                             float* lowres, LinearTap* x_taps, uint8_t* out) {
  const int mask_h = params.mask_h, mask_w = params.mask_w;
  const int64_t hw = static_cast<int64_t>(mask_h) * mask_w;
  for (int32_t k = 0; k < records.header->total; ++k) {
    const int f = records.frame[k];
    const int64_t src = (static_cast<int64_t>(f) * params.num_queries + records.query[k]) * hw;
    for (int64_t p = 0; p < hw; ++p) {
      lowres[p] = mask_source_value(load_as_float(batch.masks, src + p, batch.masks_dtype), params.mode);
    }
    const int height = batch.sizes.height[f], width = batch.sizes.width[f];
    const double scale_y = resize_scale(mask_h, height), scale_x = resize_scale(mask_w, width);
    for (int x = 0; x < width; ++x) x_taps[x] = linear_tap(x, scale_x, mask_w);
    uint8_t* dst = out + records.mask_offset[k];
    const bool packed = params.bits_per_pixel == 1;
    if (packed) std::memset(dst, 0, static_cast<size_t>(mask_payload_bytes(height, width, 1)));
    int64_t p = 0;
    for (int y = 0; y < height; ++y) {
      const LinearTap ty = linear_tap(y, scale_y, mask_h);
      for (int x = 0; x < width; ++x, ++p) {
        const uint8_t bit = bilinear(lowres, mask_w, ty, x_taps[x]) > params.threshold ? 1 : 0;
        if (packed) {
          dst[p >> 3] |= static_cast<uint8_t>(bit << packed_bit_shift(p));
        } else {
          dst[p] = bit;
        }
      }
    }
  }
}

}  // namespace segpost
