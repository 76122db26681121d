// Scoring and keep-index compaction: score = sigmoid(logit) * sigmoid(presence); keep
// score > threshold, at most top_k per frame and `capacity` in all (highest scores win);
// write records in frame order, then score descending, then query index.
#pragma once

#include "layout.h"

namespace segpost {

// CPU twin. scores: scratch of F * Q floats.
void score_compact_cpu(const Batch& batch, const CompactParams& params, float* scores,
                       int32_t* order, Records out);

#if SEGPOST_WITH_CUDA
// Once per Postprocessor: reserves shared memory for F * Q scores and flags (throws
// std::invalid_argument when the GPU has too little).
void prepare_score_compact_cuda(int max_elements);
// CUDA: one block; rank is device scratch of F * Q elements.
void score_compact_cuda(const Batch& batch, const CompactParams& params, int32_t* rank, Records out, void* stream);
#endif

}  // namespace segpost
