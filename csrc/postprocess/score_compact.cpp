#include "score_compact.h"

#include <algorithm>

namespace segpost {

void score_compact_cpu(const Batch& batch, const CompactParams& params, float* scores,
                       int32_t* order, Records out) {
  const int num_frames = batch.num_frames;
  const int num_queries = params.num_queries;
  const int64_t n = static_cast<int64_t>(num_frames) * num_queries;
  const bool has_presence = batch.presence != nullptr;
  for (int64_t i = 0; i < n; ++i) {
    const float presence =
        has_presence ? load_as_float(batch.presence, i / num_queries, batch.presence_dtype) : 0.0f;
    scores[i] = detection_score(load_as_float(batch.logits, i, batch.logits_dtype), presence,
                                has_presence);
  }
  auto before = [scores](int32_t a, int32_t b) { return ranks_before(scores[a], a, scores[b], b); };

  // Per frame: the passing indices sorted by rank, cut to top_k, packed at the front of `order`.
  int32_t kept = 0;
  for (int f = 0; f < num_frames; ++f) {
    int32_t* frame_order = order + kept;
    int32_t m = 0;
    for (int q = 0; q < num_queries; ++q) {
      const int32_t i = f * num_queries + q;
      if (scores[i] > params.score_threshold) frame_order[m++] = i;
    }
    std::sort(frame_order, frame_order + m, before);
    if (params.top_k > 0 && m > params.top_k) m = params.top_k;
    kept += m;
  }
  Header& header = *out.header;
  header.passed = kept;
  header.overflow = kept > params.capacity ? 1 : 0;
  header.num_frames = num_frames;
  if (header.overflow) {
    // Keep the `capacity` best over all frames, then restore frame order.
    std::nth_element(order, order + params.capacity, order + kept, before);
    kept = params.capacity;
    std::sort(order, order + kept, [&](int32_t a, int32_t b) {
      const int32_t fa = a / num_queries, fb = b / num_queries;
      return fa != fb ? fa < fb : before(a, b);
    });
  }
  header.total = kept;
  std::fill(header.counts, header.counts + kMaxFrames, 0);
  int64_t mask_offset = 0;
  for (int32_t k = 0; k < kept; ++k) {
    const int32_t i = order[k];
    const int32_t f = i / num_queries;
    const int h = batch.sizes.height[f], w = batch.sizes.width[f];
    ++header.counts[f];
    write_record(batch, num_queries, i, scores[i], k, mask_offset, out);
    mask_offset += mask_slot_bytes(params, h, w);
  }
  header.mask_bytes = mask_offset;
  header.mask_overflow = 0;
}

}  // namespace segpost
