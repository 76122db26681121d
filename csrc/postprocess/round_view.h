// RoundView: what one class-batch's compaction leaves for the ops that follow it in a round (the
// tracker, the zones), named, so that they read a documented contract instead of the Postprocessor's
// internals. Postprocessor::round_view() fills it; it holds no memory of its own, only addresses
// into the Postprocessor's buffers, valid until that Postprocessor's next enqueue()/run_cpu().
// The stream is not part of it: the round's stream is the caller's (Tracker::enqueue takes it).
#pragma once

#include <cstdint>

#include "layout.h"

namespace segpost {

struct RoundView {
  // The engine output the batch was compacted from, as the Postprocessor validated it:
  // pred_masks [num_frames, num_queries, mask_h, mask_w] of masks_dtype, row-major (frame f,
  // query q starts at element (f * num_queries + q) * mask_h * mask_w). Device memory when
  // it ran on CUDA, else host memory. Null before the first batch.
  const void* masks = nullptr;
  DType masks_dtype = DType::Float32;
  int32_t num_frames = 0;   // frames of the batch (0 before the first batch)
  FrameSizes sizes{};       // frame f's height and width in pixels, f < num_frames
  int32_t num_queries = 0;  // queries per frame
  int32_t mask_h = 0, mask_w = 0;  // the low-res map of one query
  // How a mask pixel is set: value > mask_threshold, the value a logit (Logit) or its sigmoid
  // (Probability); the same rule the Postprocessor's masks use.
  MaskMode mask_mode = MaskMode::Logit;
  float mask_threshold = 0.0f;
  int32_t capacity = 0;     // records a result block holds
  bool use_cuda = false;    // the Postprocessor runs on CUDA (device_results exists)
  // The result block (header + records, structure of arrays at layout's byte offsets):
  // device_results in stream order on the round's stream (CUDA only, else null); host_results
  // once the Postprocessor synchronized (the round's one wait), or at once on the CPU.
  ResultLayout layout;
  void* device_results = nullptr;
  void* host_results = nullptr;

  Records device_records() const { return layout.records(device_results); }
  Records host_records() const { return layout.records(host_results); }
};

}  // namespace segpost
