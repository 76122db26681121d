// CPU twin of the tracker's mask kernels (mask_iou.cu): the same math from mask_iou.h, in loops.
#include "mask_iou.h"

#include <cstring>

namespace segpost {

void pack_masks_cpu(const void* masks, DType dtype, const Records& records, const PackParams& p, const PoolGeometry& g,
                    uint32_t* packed) {
  const int64_t hw = static_cast<int64_t>(g.mask_h) * g.mask_w;
  for (int32_t k = 0; k < records.header->total; ++k) {
    const int64_t src = (static_cast<int64_t>(records.frame[k]) * p.num_queries + records.query[k]) * hw;
    uint32_t* dst = packed + static_cast<int64_t>(k) * g.mask_words;
    for (int y = 0; y < g.mask_h; ++y) {
      const int64_t row = src + static_cast<int64_t>(y) * g.mask_w;
      for (int w = 0; w < g.words; ++w) {
        uint32_t word = 0;
        for (int b = 0; b < 32 && 32 * w + b < g.mask_w; ++b) {
          if (mask_bit(load_as_float(masks, row + 32 * w + b, dtype), p.threshold)) word |= 1u << b;
        }
        dst[y * g.words + w] = word;
      }
    }
  }
}

void mask_iou_cpu(const Records& records, const uint32_t* packed, const FrameCameras& cameras, const SlotState* slots,
                  const uint32_t* pool, const PoolGeometry& g, int32_t class_id, MaskMeta* meta, float* iou) {
  for (int32_t k = 0; k < records.header->total; ++k) {
    const uint32_t* det = packed + static_cast<int64_t>(k) * g.mask_words;
    MaskMeta m{0, 0, 0, 0, 0};
    for (int i = 0; i < g.mask_words; ++i) add_word(m, det[i], i / g.words, i % g.words);
    meta[k] = m;
    const int64_t first_slot = static_cast<int64_t>(cameras.camera[records.frame[k]]) * g.max_tracks;
    for (int s = 0; s < g.max_tracks; ++s) {
      const SlotState& state = slots[first_slot + s];
      float value = 0.0f;
      if (state.class_id == class_id) {
        const Rect both = intersect(meta_rect(m), slot_rect(state));
        if (!rect_empty(both)) {
          const int32_t inter = intersection_part(det, pool + (first_slot + s) * g.mask_words, g.words, state.dx,
                                                  state.dy, both, 0, 1);
          value = iou_from_counts(inter, m.count, state.count);
        }
      }
      iou[static_cast<int64_t>(k) * g.max_tracks + s] = value;
    }
  }
}

void refresh_pool_cpu(const SlotPlan* plan, int32_t num_slots, const uint32_t* det_packed, const MaskMeta* det_meta,
                      const PoolGeometry& g, uint32_t* pool, MaskMeta* pool_meta, SlotState* slots) {
  for (int32_t slot = 0; slot < num_slots; ++slot) {
    const SlotPlan& e = plan[slot];
    uint32_t* mask = pool + static_cast<int64_t>(slot) * g.mask_words;
    if (e.source_class >= 0) {
      const int64_t source = static_cast<int64_t>(e.source_class) * g.capacity + e.source_k;
      std::memcpy(mask, det_packed + source * g.mask_words, sizeof(uint32_t) * g.mask_words);
      pool_meta[slot] = det_meta[source];
    }
    const MaskMeta& m = pool_meta[slot];
    const Rect r = shifted_rect(m, e.dx, e.dy, g.mask_w, g.mask_h);
    const bool recount = e.class_id >= 0 && rect_clipped(m, r, e.dx, e.dy);
    slots[slot] = planned_state(e, recount ? kept_part(mask, g.words, e.dx, e.dy, r, 0, 1) : m.count, r);
  }
}

}  // namespace segpost
