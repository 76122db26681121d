// COCO run-length encoding of kept masks (column-major, starting with a run of zeros, as
// pycocotools): resized and binarized on the fly from the gathered low-res maps, counted, placed
// in one shared counts buffer and written, without materializing the full-resolution mask.
#pragma once

#include <string>

#include "masks.h"

namespace segpost {

// CPU twin of the RLE kind: run lengths of each kept mask into `counts` (capacity entries);
// masks are placed in order and one that does not fit gets mask_length -1 (mask_overflow).
void gather_rle_masks_cpu(const Batch& batch, const MaskParams& params, const RleParams& rle,
                          const Records& records, float* lowres, int32_t* counts);

// pycocotools' compressed string of one RLE (rleToString in its maskApi.c).
std::string coco_rle_string(const int32_t* counts, int64_t length);

#if SEGPOST_WITH_CUDA
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
