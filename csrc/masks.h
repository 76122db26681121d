// Kept masks: gather each kept low-res logit map (fp16/fp32) into a float scratch, then
// bilinear-resize it to its frame's size and binarize to uint8 0/1 in a compact buffer.
#pragma once

#include <string>

#include "layout.h"

namespace segpost {

// One low-res map resized to a height x width frame and binarized, the pixels of `window` only,
// row-major into `out` (uint8 0/1, or packed bits). x_taps: scratch of window.w entries.
void resize_binarize_cpu(const float* lowres, const MaskParams& params, int height, int width, Window window,
                         LinearTap* x_taps, uint8_t* out);

// CPU twin of stage 2 (all forms but RLE): reads the records the compaction wrote; lowres:
// scratch of mask_h * mask_w floats; x_taps: scratch of at least the widest frame's width.
void gather_resize_masks_cpu(const Batch& batch, const MaskParams& params, const Records& records,
                             float* lowres, LinearTap* x_taps, uint8_t* out);

// CPU twin of the RLE kind: run lengths of each kept mask into `counts` (capacity entries);
// masks are placed in order and one that does not fit gets mask_length -1 (mask_overflow).
void gather_rle_masks_cpu(const Batch& batch, const MaskParams& params, const RleParams& rle,
                          const Records& records, float* lowres, int32_t* counts);

// pycocotools' compressed string of one RLE (rleToString in its maskApi.c).
std::string coco_rle_string(const int32_t* counts, int64_t length);

#if SEGPOST_WITH_CUDA
// Stage 1 (reads pred_masks; after it the engine's buffer may be overwritten).
void gather_masks_cuda(const Batch& batch, const MaskParams& params, const Records& records,
                       int capacity, float* lowres, void* stream);
// Once per Postprocessor: reserves the shared memory for the widest frame's column taps and
// the cached source rows
// (throws std::invalid_argument when the GPU has too little).
void prepare_resize_masks_cuda(int max_frame_w, int mask_w);
// Stage 2 (reads only the gathered scratch). `out` may be device or mapped host memory.
void resize_masks_cuda(const FrameSizes& sizes, const MaskParams& params, const Records& records,
                       int capacity, int max_frame_w, const float* lowres, uint8_t* out, void* stream);
// Stage 2 of MaskForm::LowRes: the gathered maps as fp16.
void lowres_masks_cuda(const MaskParams& params, const Records& records, int capacity, const float* lowres,
                       uint8_t* out, void* stream);

// RLE scratch: two [capacity, max_frame_w] int32 column tables, two [capacity] int32 arrays and
// the device copy of the counts buffer ([rle_capacity] int32).
struct RleScratch {
  int32_t* column_a;
  int32_t* column_b;
  int32_t* mask_total;
  int32_t* mask_last;
  int32_t* counts;
};
void prepare_rle_masks_cuda(int max_frame_h, int max_frame_w, int mask_w);
// Stage 2 of the RLE kind: count transitions per column, plan the counts buffer, write the runs
// into scratch.counts, copy the used part to `counts` (mapped host memory).
void rle_masks_cuda(const FrameSizes& sizes, const MaskParams& params, const RleParams& rle, const Records& records,
                    int capacity, int max_frame_h, int max_frame_w, const float* lowres, const RleScratch& scratch,
                    int32_t* counts, void* stream);
#endif

}  // namespace segpost
