// The engine-output postprocessor: every buffer is allocated here, once; a batch allocates
// nothing. The GPU path runs in two stages so the engine's pred_masks buffer is free early:
//   stage 1 (caller's stream): score + compact + gather kept low-res masks;
//   stage 2 (own stream):      resize + binarize into the mask buffer, copy the records to the
//                              host; the host waits once, in synchronize().
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "layout.h"
#include "round_view.h"

namespace segpost {

struct Config {
  int32_t max_frames = 8;
  int32_t num_queries = 200;
  int32_t mask_h = 288;
  int32_t mask_w = 288;
  int32_t capacity = 128;
  int32_t max_frame_h = 1080;
  int32_t max_frame_w = 1920;
  float score_threshold = 0.5f;
  float mask_threshold = 0.0f;
  MaskMode mask_mode = MaskMode::Logit;
  int32_t top_k = 0;
  bool use_cuda = false;
  bool masks_on_device = false;  // masks stay in device memory instead of crossing PCIe
  int32_t mask_bits = 8;         // 8: uint8 0/1 per pixel; 1: packed bits
  int32_t rle_capacity = 0;      // > 0: COCO RLE output, a counts buffer of this many int32
  MaskForm mask_form = MaskForm::Frame;  // Crop: box regions only; LowRes: the kept maps as fp16
};

class Postprocessor {
 public:
  explicit Postprocessor(const Config& config);
  ~Postprocessor();
  Postprocessor(const Postprocessor&) = delete;
  Postprocessor& operator=(const Postprocessor&) = delete;

  // GPU: pointers in `batch` are device memory; `stream` is a cudaStream_t (0 = legacy default).
  void enqueue(const Batch& batch, uintptr_t stream);
  // Waits for the last enqueue (the one host synchronization).
  void synchronize();
  // CPU twin: pointers in `batch` are host memory; results land in the same host buffers.
  void run_cpu(const Batch& batch);

  const Config& config() const { return config_; }
  const ResultLayout& layout() const { return layout_; }
  void* host_results() const { return host_results_; }
  // The result block on the device (CUDA only): records of the last enqueue, in stream order.
  const void* device_results() const { return device_results_; }
  // The last batch enqueue()/run_cpu() validated (its pointers, dtypes and frame count).
  const Batch& last_batch() const { return last_batch_; }
  // The last batch's results as the ops after it in a round read them (round_view.h).
  RoundView round_view() const;
  uint8_t* host_masks() const { return host_masks_; }
  uint8_t* device_masks() const { return device_masks_; }
  int64_t mask_buffer_bytes() const { return mask_buffer_bytes_; }
  int64_t device_bytes() const { return device_bytes_; }
  int64_t pinned_bytes() const { return pinned_bytes_; }
  int64_t host_bytes() const { return host_bytes_; }

 private:
  void validate(const Batch& batch, bool on_device) const;
  bool is_rle() const { return config_.rle_capacity > 0; }
  size_t rle_columns() const { return static_cast<size_t>(config_.capacity) * config_.max_frame_w; }
  void allocate_cuda();
  void release();

  Config config_;
  Batch last_batch_{};
  ResultLayout layout_;
  int64_t mask_buffer_bytes_ = 0;
  int64_t device_bytes_ = 0, pinned_bytes_ = 0, host_bytes_ = 0;
  int device_ = -1;

  // Host side (pinned when use_cuda): the result block and the masks.
  void* host_results_ = nullptr;
  uint8_t* host_masks_ = nullptr;
  // CPU twin scratch.
  std::vector<float> cpu_scores_, cpu_lowres_;
  std::vector<int32_t> cpu_order_;
  std::vector<LinearTap> cpu_x_taps_;
  // Device side.
  void* device_results_ = nullptr;
  int32_t* device_rank_ = nullptr;
  float* device_lowres_ = nullptr;
  uint8_t* device_masks_ = nullptr;  // masks_on_device
  uint8_t* mapped_masks_ = nullptr;  // device address of host_masks_ (mapped pinned memory)
  int32_t* device_rle_scratch_ = nullptr;
  void* copy_stream_ = nullptr;
  void* gathered_event_ = nullptr;
  void* done_event_ = nullptr;
};

bool built_with_cuda();
int cuda_device_count();  // 0 when no driver or no device
int64_t cuda_free_memory();  // bytes free on the current device (cudaMemGetInfo)

}  // namespace segpost
