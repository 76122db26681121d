// The compacted result block: one fixed-size region (header + per-detection records) that
// lives once on the device and once in pinned host memory, so one copy moves it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common.h"

namespace segpost {

struct Header {
  int32_t total;     // detections written (<= capacity)
  int32_t passed;    // detections that passed threshold and top-k, before the capacity cut
  int32_t overflow;  // 1 when passed > capacity: the lowest scores were dropped
  int32_t num_frames;
  int32_t mask_overflow;  // 1 when some RLE masks did not fit the counts buffer (mask_length -1)
  int32_t reserved;
  int64_t mask_bytes;  // bytes of the mask buffer in use
  int32_t counts[kMaxFrames];
};

// Views into a result block (device or host), structure of arrays.
struct Records {
  Header* header;
  int32_t* frame;
  int32_t* query;
  float* score;
  float* box;           // [capacity, 4] xyxy pixels
  int64_t* mask_offset;  // byte offset of each mask in the mask buffer
  int32_t* mask_length;  // RLE: number of run lengths (-1: did not fit); other kinds: 0
  int32_t* window;       // [capacity, 4] x0, y0, w, h of the pixels each mask holds (stage 2 writes it)
};

struct ResultLayout {
  size_t header = 0, frame = 0, query = 0, score = 0, box = 0, mask_offset = 0, mask_length = 0, window = 0, bytes = 0;

  static ResultLayout for_capacity(int capacity) {
    auto align = [](size_t v) { return (v + 255) / 256 * 256; };
    const size_t n = static_cast<size_t>(capacity);
    ResultLayout l;
    l.header = 0;
    l.frame = align(sizeof(Header));
    l.query = align(l.frame + n * sizeof(int32_t));
    l.score = align(l.query + n * sizeof(int32_t));
    l.box = align(l.score + n * sizeof(float));
    l.mask_offset = align(l.box + 4 * n * sizeof(float));
    l.mask_length = align(l.mask_offset + n * sizeof(int64_t));
    l.window = align(l.mask_length + n * sizeof(int32_t));
    l.bytes = align(l.window + 4 * n * sizeof(int32_t));
    return l;
  }

  Records records(void* base) const {
    char* b = static_cast<char*>(base);
    return Records{reinterpret_cast<Header*>(b + header), reinterpret_cast<int32_t*>(b + frame),
                   reinterpret_cast<int32_t*>(b + query),  reinterpret_cast<float*>(b + score),
                   reinterpret_cast<float*>(b + box),      reinterpret_cast<int64_t*>(b + mask_offset),
                   reinterpret_cast<int32_t*>(b + mask_length), reinterpret_cast<int32_t*>(b + window)};
  }
};

// One class-batch of engine outputs, as raw pointers (host or device) with their dtypes.
// Shapes: logits [F, Q], presence [F] (or null), boxes [F, Q, 4], masks [F, Q, mask_h, mask_w].
struct Batch {
  const void* logits = nullptr;
  DType logits_dtype = DType::Float32;
  const void* presence = nullptr;
  DType presence_dtype = DType::Float32;
  const void* boxes = nullptr;
  DType boxes_dtype = DType::Float32;
  const void* masks = nullptr;
  DType masks_dtype = DType::Float32;
  int32_t num_frames = 0;
  FrameSizes sizes{};
};

// Record k for detection i (flat index frame * Q + query), as both compaction twins write it.
SEGPOST_HD void write_record(const Batch& batch, int32_t num_queries, int32_t i, float score, int32_t k,
                             int64_t mask_offset, const Records& out) {
  const int32_t f = i / num_queries;
  out.frame[k] = f;
  out.query[k] = i - f * num_queries;
  out.score[k] = score;
  for (int c = 0; c < 4; ++c) {
    const float extent = static_cast<float>(c % 2 == 0 ? batch.sizes.width[f] : batch.sizes.height[f]);
    out.box[4 * k + c] =
        scale_box_coord(load_as_float(batch.boxes, 4 * static_cast<int64_t>(i) + c, batch.boxes_dtype), extent);
  }
  out.mask_offset[k] = mask_offset;
  out.mask_length[k] = 0;
}

struct CompactParams {
  int32_t num_queries;
  float score_threshold;
  int32_t top_k;  // <= 0: no per-frame limit
  int32_t capacity;
  int32_t bits_per_pixel;  // of the mask output: 8 (uint8 0/1) or 1 (packed)
  int32_t fixed_mask_bytes;  // > 0: every mask gets a slot of this size (LowRes), else one per its frame
};

// Bytes reserved in the mask buffer for one mask of an h x w frame.
SEGPOST_HD int64_t mask_slot_bytes(const CompactParams& p, int height, int width) {
  return p.fixed_mask_bytes > 0 ? p.fixed_mask_bytes : mask_stride_bytes(height, width, p.bits_per_pixel);
}

struct MaskParams {
  int32_t num_queries;
  int32_t mask_h;
  int32_t mask_w;
  MaskMode mode;
  float threshold;  // on the interpolated logit (Logit) or probability (Probability)
  int32_t bits_per_pixel;
  MaskForm form;
};

// COCO run lengths of the column-major mask, starting with a run of zeros (pycocotools' RLE),
// written into one counts buffer of `capacity` int32 entries shared by all masks of a batch.
struct RleParams {
  int32_t capacity;
};

}  // namespace segpost
