#include "postprocessor.h"

#include <stdexcept>
#include <string>

#include "masks.h"
#include "require.h"
#include "rle.h"
#include "score_compact.h"

#if SEGPOST_WITH_CUDA
#include "cuda_check.h"
#endif

namespace segpost {
namespace {

template <class Message>
void require(bool ok, Message&& message) {
  require_argument(ok, "segpost.Postprocessor", message);
}

Config validated(const Config& c) {
  require(c.max_frames >= 1 && c.max_frames <= kMaxFrames, [&] {
    return "max_frames must be in [1, " + std::to_string(kMaxFrames) + "], got " + std::to_string(c.max_frames);
  });
  require(c.num_queries >= 1, "num_queries must be >= 1");
  require(static_cast<int64_t>(c.max_frames) * c.num_queries <= (1 << 20),
          "max_frames * num_queries must be <= 1048576");
  require(c.mask_h >= 1 && c.mask_w >= 1, "mask_size must be positive");
  require(c.capacity >= 1 && c.capacity <= 65535, "capacity must be in [1, 65535]");
  require(c.max_frame_h >= 1 && c.max_frame_w >= 1, "max_frame_size must be positive");
  // The resize kernel indexes a mask's pixels with 32-bit ints.
  require(static_cast<int64_t>(c.max_frame_h) * c.max_frame_w < (int64_t{1} << 31),
          "max_frame_size must have fewer than 2^31 pixels");
  require(c.score_threshold >= 0.0f && c.score_threshold <= 1.0f, "score_threshold must be in [0, 1]");
  require(c.mask_threshold == c.mask_threshold, "mask_threshold must not be NaN");
  require(c.top_k >= 0, "top_k must be >= 0 (0 = no limit)");
  require(!c.masks_on_device || c.use_cuda, "masks_on_device needs the CUDA backend");
  require(c.mask_bits == 8 || c.mask_bits == 1, "mask_bits must be 8 or 1");
  require(c.rle_capacity >= 0, "rle_capacity must be >= 0");
  require(c.rle_capacity == 0 || !c.masks_on_device, "RLE output is delivered on the host");
  require(c.mask_form == MaskForm::Frame || (c.mask_bits == 8 && c.rle_capacity == 0 && !c.masks_on_device),
          "crop and lowres outputs are uint8/fp16 on the host, not packed, RLE or on the device");
  require(static_cast<int32_t>(c.mask_form) >= 0 && static_cast<int32_t>(c.mask_form) <= 2, "unknown mask_form");
  return c;
}

int64_t lowres_slot_bytes(const Config& c) {
  return (static_cast<int64_t>(c.mask_h) * c.mask_w * 2 + kMaskAlign - 1) / kMaskAlign * kMaskAlign;
}

MaskParams mask_params(const Config& c) {
  return MaskParams{c.num_queries, c.mask_h, c.mask_w, c.mask_mode, c.mask_threshold, c.mask_bits, c.mask_form};
}

CompactParams compact_params(const Config& c) {
  return CompactParams{c.num_queries, c.score_threshold, c.top_k, c.capacity, c.mask_bits,
                       c.mask_form == MaskForm::LowRes ? static_cast<int32_t>(lowres_slot_bytes(c)) : 0};
}

}  // namespace

Postprocessor::Postprocessor(const Config& config)
    : config_(validated(config)), layout_(ResultLayout::for_capacity(config.capacity)) {
  mask_buffer_bytes_ = is_rle() ? static_cast<int64_t>(config_.rle_capacity) * static_cast<int64_t>(sizeof(int32_t))
                     : config_.mask_form == MaskForm::LowRes
                         ? lowres_slot_bytes(config_) * config_.capacity
                         : mask_stride_bytes(config_.max_frame_h, config_.max_frame_w, config_.mask_bits) * config_.capacity;
  const size_t n = static_cast<size_t>(config_.max_frames) * config_.num_queries;
  cpu_scores_.resize(n);
  cpu_order_.resize(n);
  cpu_lowres_.resize(static_cast<size_t>(config_.mask_h) * config_.mask_w);
  cpu_x_taps_.resize(static_cast<size_t>(config_.max_frame_w));
  host_bytes_ = static_cast<int64_t>(n * (sizeof(float) + sizeof(int32_t)) +
                                     cpu_lowres_.size() * sizeof(float) + cpu_x_taps_.size() * sizeof(LinearTap));
  if (config_.use_cuda) {
    try {
      allocate_cuda();
    } catch (...) {
      release();
      throw;
    }
  } else {
    host_results_ = ::operator new(layout_.bytes);
    host_masks_ = static_cast<uint8_t*>(::operator new(static_cast<size_t>(mask_buffer_bytes_)));
    host_bytes_ += static_cast<int64_t>(layout_.bytes) + mask_buffer_bytes_;
  }
}

Postprocessor::~Postprocessor() {
  if (config_.use_cuda) {
#if SEGPOST_WITH_CUDA
    // Outstanding work may still write into the buffers about to be freed.
    if (done_event_) cudaEventSynchronize(static_cast<cudaEvent_t>(done_event_));
#endif
  }
  release();
}

void Postprocessor::validate(const Batch& b, bool on_device) const {
  require(b.num_frames >= 1 && b.num_frames <= config_.max_frames, [&] {
    return "batch of " + std::to_string(b.num_frames) + " frames; this Postprocessor takes 1 to " +
           std::to_string(config_.max_frames);
  });
  require(b.logits && b.boxes && b.masks, "null pointer for pred_logits, pred_boxes or pred_masks");
  for (int f = 0; f < b.num_frames; ++f) {
    const int h = b.sizes.height[f], w = b.sizes.width[f];
    require(h >= 1 && w >= 1 && h <= config_.max_frame_h && w <= config_.max_frame_w, [&] {
      return "frame " + std::to_string(f) + " size " + std::to_string(h) + "x" + std::to_string(w) +
             " is outside 1x1 .. " + std::to_string(config_.max_frame_h) + "x" + std::to_string(config_.max_frame_w) +
             " (max_frame_size)";
    });
  }
  if (on_device) require(config_.use_cuda, "device inputs given to a Postprocessor built for the CPU");
}

RoundView Postprocessor::round_view() const {
  RoundView v;
  v.masks = last_batch_.masks;
  v.masks_dtype = last_batch_.masks_dtype;
  v.num_frames = last_batch_.num_frames;
  v.sizes = last_batch_.sizes;
  v.num_queries = config_.num_queries;
  v.mask_h = config_.mask_h;
  v.mask_w = config_.mask_w;
  v.mask_mode = config_.mask_mode;
  v.mask_threshold = config_.mask_threshold;
  v.capacity = config_.capacity;
  v.use_cuda = config_.use_cuda;
  v.layout = layout_;
  v.device_results = device_results_;
  v.host_results = host_results_;
  return v;
}

void Postprocessor::run_cpu(const Batch& batch) {
  validate(batch, false);
  require(!config_.masks_on_device, "host (numpy) inputs given to a Postprocessor with masks_on_device");
  last_batch_ = batch;  // only a batch that passed every check (the Tracker reads its masks)
#if SEGPOST_WITH_CUDA
  // The pinned buffers may still be the target of an enqueued copy.
  if (done_event_) SEGPOST_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(done_event_)), "run_cpu");
#endif
  const Records records = layout_.records(host_results_);
  score_compact_cpu(batch, compact_params(config_), cpu_scores_.data(), cpu_order_.data(), records);
  if (is_rle()) {
    gather_rle_masks_cpu(batch, mask_params(config_), RleParams{config_.rle_capacity}, records, cpu_lowres_.data(),
                         reinterpret_cast<int32_t*>(host_masks_));
  } else {
    gather_resize_masks_cpu(batch, mask_params(config_), records, cpu_lowres_.data(), cpu_x_taps_.data(),
                            host_masks_);
  }
}

#if SEGPOST_WITH_CUDA

namespace {

// A host pointer, a freed buffer or another GPU's memory would fault inside a kernel; this
// turns each into a message instead.
void check_device_pointer(const void* ptr, int device, const char* name) {
  if (ptr == nullptr) return;
  cudaPointerAttributes attributes{};
  const cudaError_t err = cudaPointerGetAttributes(&attributes, ptr);
  if (err != cudaSuccess) {
    cudaGetLastError();
    throw std::invalid_argument(std::string("segpost.Postprocessor: ") + name +
                                " is not a CUDA allocation (" + cudaGetErrorName(err) + ")");
  }
  const bool device_visible = attributes.type == cudaMemoryTypeDevice || attributes.type == cudaMemoryTypeManaged ||
                              (attributes.type == cudaMemoryTypeHost && attributes.devicePointer != nullptr);
  require(device_visible,
          [&] { return std::string(name) + " is host memory or freed; the CUDA path needs device memory"; });
  require(attributes.type != cudaMemoryTypeDevice || attributes.device == device, [&] {
    return std::string(name) + " lives on GPU " + std::to_string(attributes.device) +
           " but this Postprocessor was built on GPU " + std::to_string(device);
  });
}

}  // namespace

void Postprocessor::allocate_cuda() {
  if (cuda_device_count() == 0) {
    throw std::runtime_error(
        "segpost.Postprocessor(device='cuda'): no CUDA device is available (no NVIDIA driver or no GPU); "
        "use device='cpu' (numpy inputs, the C++ CPU twin)");
  }
  SEGPOST_CUDA_CHECK(cudaGetDevice(&device_), "Postprocessor()");
  prepare_resize_masks_cuda(config_.max_frame_w, config_.mask_w);
  prepare_score_compact_cuda(config_.max_frames * config_.num_queries);
  const size_t n = static_cast<size_t>(config_.max_frames) * config_.num_queries;
  const size_t lowres_bytes = static_cast<size_t>(config_.capacity) * config_.mask_h * config_.mask_w * sizeof(float);
  SEGPOST_CUDA_CHECK(cudaMalloc(&device_results_, layout_.bytes), "Postprocessor()");
  // Each batch copies the whole fixed-size block back, records past the kept count included.
  SEGPOST_CUDA_CHECK(cudaMemset(device_results_, 0, layout_.bytes), "Postprocessor()");
  SEGPOST_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&device_rank_), n * sizeof(int32_t)), "Postprocessor()");
  SEGPOST_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&device_lowres_), lowres_bytes), "Postprocessor()");
  device_bytes_ = static_cast<int64_t>(layout_.bytes + n * sizeof(int32_t) + lowres_bytes);
  if (is_rle()) {
    prepare_rle_masks_cuda(config_.max_frame_h, config_.max_frame_w, config_.mask_w);
    const size_t rle_bytes = (2 * rle_columns() + 2 * static_cast<size_t>(config_.capacity) + config_.rle_capacity) *
                             sizeof(int32_t);
    SEGPOST_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&device_rle_scratch_), rle_bytes), "Postprocessor()");
    device_bytes_ += static_cast<int64_t>(rle_bytes);
  }
  SEGPOST_CUDA_CHECK(cudaHostAlloc(&host_results_, layout_.bytes, cudaHostAllocDefault), "Postprocessor()");
  pinned_bytes_ = static_cast<int64_t>(layout_.bytes);
  if (config_.masks_on_device) {
    SEGPOST_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&device_masks_), mask_buffer_bytes_), "Postprocessor()");
    device_bytes_ += mask_buffer_bytes_;
  } else {
    // The resize kernel writes straight into mapped pinned memory: only the kept masks' bytes
    // cross PCIe, and no host round trip is needed to learn how many there are.
    SEGPOST_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&host_masks_), mask_buffer_bytes_, cudaHostAllocMapped),
                       "Postprocessor()");
    SEGPOST_CUDA_CHECK(cudaHostGetDevicePointer(reinterpret_cast<void**>(&mapped_masks_), host_masks_, 0),
                       "Postprocessor()");
    pinned_bytes_ += mask_buffer_bytes_;
  }
  cudaStream_t stream;
  SEGPOST_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "Postprocessor()");
  copy_stream_ = stream;
  cudaEvent_t event;
  SEGPOST_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming), "Postprocessor()");
  gathered_event_ = event;
  SEGPOST_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming), "Postprocessor()");
  done_event_ = event;
}

void Postprocessor::release() {
  if (config_.use_cuda) {
    cudaFree(device_results_);
    cudaFree(device_rank_);
    cudaFree(device_lowres_);
    cudaFree(device_masks_);
    cudaFree(device_rle_scratch_);
    cudaFreeHost(host_results_);
    cudaFreeHost(host_masks_);
    if (gathered_event_) cudaEventDestroy(static_cast<cudaEvent_t>(gathered_event_));
    if (done_event_) cudaEventDestroy(static_cast<cudaEvent_t>(done_event_));
    if (copy_stream_) cudaStreamDestroy(static_cast<cudaStream_t>(copy_stream_));
  } else {
    ::operator delete(host_results_);
    ::operator delete(host_masks_);
  }
  host_results_ = nullptr;
  host_masks_ = nullptr;
}

void Postprocessor::enqueue(const Batch& batch, uintptr_t stream_handle) {
  validate(batch, true);
  DeviceGuard guard(device_);
  check_device_pointer(batch.logits, device_, "pred_logits");
  check_device_pointer(batch.presence, device_, "presence_logits");
  check_device_pointer(batch.boxes, device_, "pred_boxes");
  check_device_pointer(batch.masks, device_, "pred_masks");
  last_batch_ = batch;  // only a batch that passed every check (the Tracker reads its masks)
  auto* stream = reinterpret_cast<cudaStream_t>(stream_handle);
  auto* copy_stream = static_cast<cudaStream_t>(copy_stream_);
  auto* gathered = static_cast<cudaEvent_t>(gathered_event_);
  auto* done = static_cast<cudaEvent_t>(done_event_);
  const Records records = layout_.records(device_results_);
  const MaskParams masks = mask_params(config_);

  // The previous batch's stage 2 may still read the scratch this stage overwrites.
  SEGPOST_CUDA_CHECK(cudaStreamWaitEvent(stream, done, 0), "enqueue");
  score_compact_cuda(batch, compact_params(config_), device_rank_, records, stream);
  gather_masks_cuda(batch, masks, records, config_.capacity, device_lowres_, stream);
  SEGPOST_CUDA_CHECK(cudaEventRecord(gathered, stream), "enqueue");

  SEGPOST_CUDA_CHECK(cudaStreamWaitEvent(copy_stream, gathered, 0), "enqueue");
  uint8_t* mask_target = config_.masks_on_device ? device_masks_ : mapped_masks_;
  if (is_rle()) {
    // The counts first: the copy kernel reads them in 16-byte words from cudaMalloc's alignment.
    int32_t* columns = device_rle_scratch_ + config_.rle_capacity;
    int32_t* per_mask = columns + 2 * rle_columns();
    const RleScratch scratch{columns, columns + rle_columns(), per_mask, per_mask + config_.capacity,
                             device_rle_scratch_};
    rle_masks_cuda(batch.sizes, masks, RleParams{config_.rle_capacity}, records, config_.capacity, config_.max_frame_h,
                   config_.max_frame_w, device_lowres_, scratch, reinterpret_cast<int32_t*>(mask_target), copy_stream);
  } else if (config_.mask_form == MaskForm::LowRes) {
    lowres_masks_cuda(masks, records, config_.capacity, device_lowres_, mask_target, copy_stream);
  } else {
    resize_masks_cuda(batch.sizes, masks, records, config_.capacity, config_.max_frame_w, device_lowres_, mask_target,
                      copy_stream);
  }
  SEGPOST_CUDA_CHECK(cudaMemcpyAsync(host_results_, device_results_, layout_.bytes, cudaMemcpyDeviceToHost, copy_stream),
                     "enqueue (result copy)");
  SEGPOST_CUDA_CHECK(cudaEventRecord(done, copy_stream), "enqueue");
}

void Postprocessor::synchronize() {
  if (!config_.use_cuda) return;
  SEGPOST_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(done_event_)), "result");
}

bool built_with_cuda() { return true; }

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

int64_t cuda_free_memory() {
  size_t free_bytes = 0, total_bytes = 0;
  SEGPOST_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes), "vram report");
  return static_cast<int64_t>(free_bytes);
}

#else  // CPU-only build: the same module, the CUDA entry points say why they cannot run.

namespace {
[[noreturn]] void no_cuda() {
  throw std::runtime_error(
      "segpost was built without CUDA (no CUDA compiler was found at install time); "
      "reinstall with nvcc on PATH or CUDACXX set, or pass numpy arrays to use the CPU twin");
}
}  // namespace

void Postprocessor::allocate_cuda() { no_cuda(); }
void Postprocessor::release() {
  ::operator delete(host_results_);
  ::operator delete(host_masks_);
  host_results_ = nullptr;
  host_masks_ = nullptr;
}
void Postprocessor::enqueue(const Batch&, uintptr_t) { no_cuda(); }
void Postprocessor::synchronize() {}
bool built_with_cuda() { return false; }
int cuda_device_count() { return 0; }
int64_t cuda_free_memory() { no_cuda(); }

#endif

}  // namespace segpost
