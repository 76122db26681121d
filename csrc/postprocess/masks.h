// Kept masks: gather each kept low-res logit map (fp16/fp32) into a float scratch, then
// bilinear-resize it to its frame's size and binarize to uint8 0/1 in a compact buffer.
#pragma once

#include "layout.h"

namespace segpost {

// Mask k's low-res map as floats (logits, or probabilities in MaskMode::Probability), as the GPU
// gather writes it: the CPU twin's gather, shared by every mask form.
void gather_lowres(const Batch& batch, const MaskParams& params, const Records& records, int32_t k, float* lowres);

// One low-res map resized to a height x width frame and binarized, the pixels of `window` only,
// row-major into `out` (uint8 0/1, or packed bits). x_taps: scratch of window.w entries.
void resize_binarize_cpu(const float* lowres, const MaskParams& params, int height, int width, Window window,
                         LinearTap* x_taps, uint8_t* out);

// CPU twin of stage 2 (all forms but RLE): reads the records the compaction wrote; lowres:
// scratch of mask_h * mask_w floats; x_taps: scratch of at least the widest frame's width.
void gather_resize_masks_cpu(const Batch& batch, const MaskParams& params, const Records& records,
                             float* lowres, LinearTap* x_taps, uint8_t* out);

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
#endif

}  // namespace segpost
