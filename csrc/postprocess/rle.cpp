#include "rle.h"

namespace segpost {
namespace {

// Walks a resized, binarized mask in column-major order (COCO's RLE order).
struct ColumnWalker {
  const float* lowres;
  int mask_h, mask_w, height, width;
  double scale_y, scale_x;
  float threshold;

  // Calls emit(position) for each column-major position whose pixel differs from the one before
  // (the pixel before the first counts as 0).
  template <typename Emit>
  void transitions(Emit emit) const {
    bool previous = false;
    for (int x = 0; x < width; ++x) {
      const LinearTap tx = linear_tap(x, scale_x, mask_w);
      for (int y = 0; y < height; ++y) {
        const bool bit = bilinear(lowres, mask_w, linear_tap(y, scale_y, mask_h), tx) > threshold;
        if (bit != previous) emit(static_cast<int64_t>(x) * height + y);
        previous = bit;
      }
    }
  }
};

}  // namespace

void gather_rle_masks_cpu(const Batch& batch, const MaskParams& params, const RleParams& rle,
                          const Records& records, float* lowres, int32_t* counts) {
  const int mask_h = params.mask_h, mask_w = params.mask_w;
  int64_t used = 0;
  records.header->mask_overflow = 0;
  for (int32_t k = 0; k < records.header->total; ++k) {
    const int f = records.frame[k];
    gather_lowres(batch, params, records, k, lowres);
    const int height = batch.sizes.height[f], width = batch.sizes.width[f];
    const ColumnWalker walker{lowres, mask_h, mask_w, height, width, resize_scale(mask_h, height),
                              resize_scale(mask_w, width), params.threshold};
    int64_t num_transitions = 0;
    walker.transitions([&](int64_t) { ++num_transitions; });
    const int64_t length = num_transitions + 1;
    if (used + length > rle.capacity) {
      records.mask_length[k] = -1;
      records.mask_offset[k] = 0;
      records.header->mask_overflow = 1;
      continue;
    }
    int32_t* out = counts + used;
    int64_t previous = 0, j = 0;
    walker.transitions([&](int64_t position) {
      out[j++] = static_cast<int32_t>(position - previous);
      previous = position;
    });
    out[j] = static_cast<int32_t>(static_cast<int64_t>(height) * width - previous);
    records.mask_offset[k] = used * static_cast<int64_t>(sizeof(int32_t));
    records.mask_length[k] = static_cast<int32_t>(length);
    used += length;
  }
  records.header->mask_bytes = used * static_cast<int64_t>(sizeof(int32_t));
}

std::string coco_rle_string(const int32_t* counts, int64_t length) {
  std::string s;
  s.reserve(static_cast<size_t>(length) * 2);
  for (int64_t i = 0; i < length; ++i) {
    int64_t x = counts[i];
    if (i > 2) x -= counts[i - 2];
    bool more = true;
    while (more) {
      char c = static_cast<char>(x & 0x1f);
      x >>= 5;
      more = (c & 0x10) ? x != -1 : x != 0;
      if (more) c |= 0x20;
      s.push_back(static_cast<char>(c + 48));
    }
  }
  return s;
}

}  // namespace segpost
