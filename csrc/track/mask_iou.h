// Mask IoU between detections and tracks on bit-packed low-res masks: the per-element math
// shared by the CUDA kernels (mask_iou.cu) and their CPU twin (mask_iou.cpp).
//
// A packed mask is the engine's [mask_h, mask_w] map thresholded as the Postprocessor does,
// row-major, each row ceil(mask_w / 32) uint32 words, pixel x at bit (x % 32) of word x / 32
// (288x288: 10 KB). Bits past mask_w are 0. A track keeps its last detection's packed mask and
// compares it, shifted by the motion model's predicted displacement (whole low-res pixels), with
// each new detection; only the rows and words where both masks' bounding windows meet are read.
#pragma once

#include <cstdint>

#include "common.h"
#include "postprocess/layout.h"

#if !defined(__CUDA_ARCH__) && defined(_MSC_VER)
#include <intrin.h>
#endif

namespace segpost {

// Pixel count and bounding window (x1, y1 exclusive) of a packed mask; all zero when empty.
struct MaskMeta {
  int32_t count;
  int32_t x0, y0, x1, y1;
};

// A track slot as the IoU kernel reads it: its class (-1: free), the shift to apply to its
// mask, and the shifted mask's window and pixel count, clipped to the map.
struct SlotState {
  int32_t class_id;
  int32_t dx, dy;
  int32_t count;
  int32_t x0, y0, x1, y1;
};

// What the host decides for a slot after a round: the class it holds (-1: free), the detection
// whose mask replaces the slot's (source_class -1: keep the mask), the shift for the next frame.
struct SlotPlan {
  int32_t class_id;
  int32_t source_class;
  int32_t source_k;
  int32_t dx, dy;
};

// Camera pool of each frame of a batch (a kernel argument, like FrameSizes).
struct FrameCameras {
  int32_t camera[kMaxFrames];
};

struct PackParams {
  int32_t num_queries;
  float threshold;  // in logit space (see mask_bit), so no sigmoid is evaluated per pixel
};

SEGPOST_HD int32_t words_per_row(int mask_w) { return (mask_w + 31) / 32; }

// A pixel is set when the Postprocessor's source value passes its threshold: logit > t, or
// sigmoid(logit) > t, which is logit > log(t / (1 - t)), so GPU and CPU agree bit for bit.
SEGPOST_HD bool mask_bit(float raw, float logit_threshold) {
  return finite_mask_logit(raw) > logit_threshold;
}

SEGPOST_HD int popcount32(uint32_t v) {
#if defined(__CUDA_ARCH__)
  return __popc(v);
#elif defined(_MSC_VER)
  return static_cast<int>(__popcnt(v));
#else
  return __builtin_popcount(v);
#endif
}

// Index of the lowest / highest set bit of a non-zero word.
SEGPOST_HD int lowest_bit(uint32_t v) {
#if defined(__CUDA_ARCH__)
  return __ffs(static_cast<int>(v)) - 1;
#elif defined(_MSC_VER)
  unsigned long i;
  _BitScanForward(&i, v);
  return static_cast<int>(i);
#else
  return __builtin_ctz(v);
#endif
}

SEGPOST_HD int highest_bit(uint32_t v) {
#if defined(__CUDA_ARCH__)
  return 31 - __clz(static_cast<int>(v));
#elif defined(_MSC_VER)
  unsigned long i;
  _BitScanReverse(&i, v);
  return static_cast<int>(i);
#else
  return 31 - __builtin_clz(v);
#endif
}

// Bits of word w that hold pixels x0 <= x < x1.
SEGPOST_HD uint32_t range_bits(int w, int x0, int x1) {
  const int lo = x0 - 32 * w, hi = x1 - 32 * w;
  if (hi <= 0 || lo >= 32) return 0u;
  const uint32_t below_hi = hi >= 32 ? 0xffffffffu : (1u << hi) - 1u;
  const uint32_t below_lo = lo <= 0 ? 0u : (1u << lo) - 1u;
  return below_hi & ~below_lo;
}

// Word w of a row shifted right by dx pixels: pixel x of the result is pixel x - dx of `row`.
SEGPOST_HD uint32_t shifted_word(const uint32_t* row, int words, int w, int dx) {
  const int start = 32 * w - dx;  // the source pixel of bit 0
  const int first = start >= 0 ? start / 32 : -((31 - start) / 32);  // floor division
  const int offset = start - 32 * first;
  const uint32_t low = first >= 0 && first < words ? row[first] : 0u;
  if (offset == 0) return low;
  const uint32_t high = first + 1 >= 0 && first + 1 < words ? row[first + 1] : 0u;
  return (low >> offset) | (high << (32 - offset));
}

// Grows meta's window by the set pixels of word w of row y (count included).
SEGPOST_HD void add_word(MaskMeta& meta, uint32_t word, int y, int w) {
  if (!word) return;
  const int x0 = 32 * w + lowest_bit(word), x1 = 32 * w + highest_bit(word) + 1;
  if (meta.count == 0) {
    meta = MaskMeta{0, x0, y, x1, y + 1};
  } else {
    meta.x0 = meta.x0 < x0 ? meta.x0 : x0;
    meta.x1 = meta.x1 > x1 ? meta.x1 : x1;
    meta.y0 = meta.y0 < y ? meta.y0 : y;
    meta.y1 = meta.y1 > y + 1 ? meta.y1 : y + 1;
  }
  meta.count += popcount32(word);
}

struct Rect {
  int32_t x0, y0, x1, y1;  // x1, y1 exclusive; empty when x1 <= x0 or y1 <= y0
};

SEGPOST_HD bool rect_empty(const Rect& r) { return r.x1 <= r.x0 || r.y1 <= r.y0; }

SEGPOST_HD Rect intersect(const Rect& a, const Rect& b) {
  return Rect{a.x0 > b.x0 ? a.x0 : b.x0, a.y0 > b.y0 ? a.y0 : b.y0, a.x1 < b.x1 ? a.x1 : b.x1,
              a.y1 < b.y1 ? a.y1 : b.y1};
}

SEGPOST_HD Rect meta_rect(const MaskMeta& m) { return Rect{m.x0, m.y0, m.x1, m.y1}; }

SEGPOST_HD Rect slot_rect(const SlotState& s) { return Rect{s.x0, s.y0, s.x1, s.y1}; }

// A mask's window moved by (dx, dy) and clipped to the map.
SEGPOST_HD Rect shifted_rect(const MaskMeta& meta, int dx, int dy, int mask_w, int mask_h) {
  auto clip = [](int v, int hi) { return v < 0 ? 0 : v > hi ? hi : v; };
  if (meta.count == 0) return Rect{0, 0, 0, 0};
  return Rect{clip(meta.x0 + dx, mask_w), clip(meta.y0 + dy, mask_h), clip(meta.x1 + dx, mask_w),
              clip(meta.y1 + dy, mask_h)};
}

// True when clipping cut some of the shifted mask off the map (its count must then be redone).
SEGPOST_HD bool rect_clipped(const MaskMeta& meta, const Rect& shifted, int dx, int dy) {
  return shifted.x0 != meta.x0 + dx || shifted.y0 != meta.y0 + dy || shifted.x1 != meta.x1 + dx ||
         shifted.y1 != meta.y1 + dy;
}

// The (row, word) pairs of a window, flattened; loops below take pairs begin, begin + step, ...
// (a warp's lanes split them on the GPU, the CPU takes them all).
struct WordSpan {
  int32_t w0, span, pairs;
};

SEGPOST_HD WordSpan word_span(const Rect& r) {
  if (rect_empty(r)) return WordSpan{0, 0, 0};
  const int w0 = r.x0 / 32, span = (r.x1 - 1) / 32 + 1 - w0;
  return WordSpan{w0, span, span * (r.y1 - r.y0)};
}

// Pixels set in both a detection's mask and a track's mask moved by (dx, dy), over window `r`
// (inside both masks' windows). Bits outside either window are 0 in that mask, so no masking.
SEGPOST_HD int32_t intersection_part(const uint32_t* det, const uint32_t* track, int words, int dx, int dy,
                                     const Rect& r, int begin, int step) {
  const WordSpan s = word_span(r);
  int32_t sum = 0;
  for (int i = begin; i < s.pairs; i += step) {
    const int y = r.y0 + i / s.span, w = s.w0 + i % s.span;
    sum += popcount32(det[y * words + w] & shifted_word(track + (y - dy) * words, words, w, dx));
  }
  return sum;
}

// Pixels of a track's mask moved by (dx, dy) that land inside `r` (its shifted, clipped window):
// the moved mask's own pixel count. Bits past the map's width are cut by range_bits.
SEGPOST_HD int32_t kept_part(const uint32_t* track, int words, int dx, int dy, const Rect& r, int begin, int step) {
  const WordSpan s = word_span(r);
  int32_t sum = 0;
  for (int i = begin; i < s.pairs; i += step) {
    const int y = r.y0 + i / s.span, w = s.w0 + i % s.span;
    sum += popcount32(shifted_word(track + (y - dy) * words, words, w, dx) & range_bits(w, r.x0, r.x1));
  }
  return sum;
}

// IoU from integer counts: the one division, done alike on both sides (IEEE, correctly rounded).
SEGPOST_HD float iou_from_counts(int32_t inter, int32_t a, int32_t b) {
  const int32_t uni = a + b - inter;
  return uni > 0 ? static_cast<float>(inter) / static_cast<float>(uni) : 0.0f;
}

// A slot's state for the next frame: free, or its class, shift and moved mask's count and window.
SEGPOST_HD SlotState planned_state(const SlotPlan& e, int32_t count, const Rect& r) {
  if (e.class_id < 0) return SlotState{-1, 0, 0, 0, 0, 0, 0, 0};
  return SlotState{e.class_id, e.dx, e.dy, count, r.x0, r.y0, r.x1, r.y1};
}

// Sizes shared by the packed detections and the track pool.
struct PoolGeometry {
  int32_t mask_h, mask_w;
  int32_t words;       // per row
  int32_t mask_words;  // per mask: mask_h * words
  int32_t capacity;    // detections per class-batch
  int32_t max_tracks;  // slots per camera
};

// -- the ops: CPU twin (mask_iou.cpp) and kernels (mask_iou.cu) ---------------------------------

// Each kept detection's map (records k < total) packed into packed[k * mask_words ..].
void pack_masks_cpu(const void* masks, DType dtype, const Records& records, const PackParams& params,
                    const PoolGeometry& g, uint32_t* packed);
// Each kept detection's MaskMeta, and its IoU with every slot of its camera's pool holding
// `class_id` (0 for the others): iou[k * max_tracks + slot].
void mask_iou_cpu(const Records& records, const uint32_t* packed, const FrameCameras& cameras,
                  const SlotState* slots, const uint32_t* pool, const PoolGeometry& g, int32_t class_id,
                  MaskMeta* meta, float* iou);
// After a round: slots take their planned detection's mask (det_* are [classes][capacity]), then
// each slot's state for the next frame.
void refresh_pool_cpu(const SlotPlan* plan, int32_t num_slots, const uint32_t* det_packed, const MaskMeta* det_meta,
                      const PoolGeometry& g, uint32_t* pool, MaskMeta* pool_meta, SlotState* slots);

#if SEGPOST_WITH_CUDA
void pack_masks_cuda(const void* masks, DType dtype, const Records& records, const PackParams& params,
                     const PoolGeometry& g, uint32_t* packed, void* stream);
void mask_iou_cuda(const Records& records, const uint32_t* packed, const FrameCameras& cameras,
                   const SlotState* slots, const uint32_t* pool, const PoolGeometry& g, int32_t class_id,
                   MaskMeta* meta, float* iou, void* stream);
void refresh_pool_cuda(const SlotPlan* plan, int32_t num_slots, const uint32_t* det_packed, const MaskMeta* det_meta,
                       const PoolGeometry& g, uint32_t* pool, MaskMeta* pool_meta, SlotState* slots, void* stream);
#endif

}  // namespace segpost
