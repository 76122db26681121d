#include "cuda_check.h"
#include "score_compact.h"

namespace segpost {
namespace {

constexpr int kCompactThreads = 1024;

// One block does the whole class-batch: F * Q is a few thousand elements, so ranking by
// counting (O(Q) per element, no sort, no global sync) costs microseconds and is deterministic.
// Scores and keep flags, read by every thread, live in shared memory; ranks (read only by their
// owner) in global scratch.
__global__ void __launch_bounds__(kCompactThreads)
    score_compact_kernel(Batch batch, CompactParams params, int32_t* rank, Records out) {
  extern __shared__ float scores[];
  int32_t* keep = reinterpret_cast<int32_t*>(scores + batch.num_frames * params.num_queries);
  __shared__ int32_t kept_total;
  __shared__ int32_t counts[kMaxFrames];
  __shared__ int32_t first[kMaxFrames];
  __shared__ int64_t mask_base[kMaxFrames];
  const int tid = threadIdx.x;
  const int num_frames = batch.num_frames;
  const int num_queries = params.num_queries;
  const int n = num_frames * num_queries;
  const float threshold = params.score_threshold;
  const bool has_presence = batch.presence != nullptr;

  if (tid == 0) kept_total = 0;
  for (int f = tid; f < kMaxFrames; f += blockDim.x) counts[f] = 0;
  for (int i = tid; i < n; i += blockDim.x) {
    const float presence =
        has_presence ? load_as_float(batch.presence, i / num_queries, batch.presence_dtype) : 0.0f;
    scores[i] = detection_score(load_as_float(batch.logits, i, batch.logits_dtype), presence,
                                has_presence);
  }
  __syncthreads();

  // Rank of each passing detection within its frame; top_k cuts by that rank.
  int local_kept = 0;
  for (int i = tid; i < n; i += blockDim.x) {
    const float s = scores[i];
    int32_t k = 0;
    if (s > threshold) {
      const int begin = (i / num_queries) * num_queries;
      int32_t r = 0;
      for (int j = begin; j < begin + num_queries; ++j) {
        const float sj = scores[j];
        r += (sj > threshold && ranks_before(sj, j, s, i)) ? 1 : 0;
      }
      rank[i] = r;
      k = (params.top_k <= 0 || r < params.top_k) ? 1 : 0;
    }
    keep[i] = k;
    local_kept += k;
  }
  if (local_kept) atomicAdd(&kept_total, local_kept);
  __syncthreads();
  const int32_t passed = kept_total;
  const bool overflow = passed > params.capacity;

  if (overflow) {
    // Keep the `capacity` best over all frames: each candidate's rank among all candidates.
    for (int i = tid; i < n; i += blockDim.x) {
      if (!keep[i]) continue;
      const float s = scores[i];
      int32_t g = 0;
      for (int j = 0; j < n; ++j) g += (keep[j] && ranks_before(scores[j], j, s, i)) ? 1 : 0;
      rank[i] = g < params.capacity ? 1 : 0;
    }
    __syncthreads();
    for (int i = tid; i < n; i += blockDim.x) {
      if (keep[i]) keep[i] = rank[i];
    }
    __syncthreads();
    // Ranks within each frame among the survivors.
    for (int i = tid; i < n; i += blockDim.x) {
      if (!keep[i]) continue;
      const float s = scores[i];
      const int begin = (i / num_queries) * num_queries;
      int32_t r = 0;
      for (int j = begin; j < begin + num_queries; ++j) r += (keep[j] && ranks_before(scores[j], j, s, i)) ? 1 : 0;
      rank[i] = r;
    }
  }
  for (int i = tid; i < n; i += blockDim.x) {
    if (keep[i]) atomicAdd(&counts[i / num_queries], 1);
  }
  __syncthreads();

  if (tid == 0) {
    int32_t total = 0;
    int64_t bytes = 0;
    for (int f = 0; f < num_frames; ++f) {
      first[f] = total;
      mask_base[f] = bytes;
      total += counts[f];
      bytes += counts[f] * mask_slot_bytes(params, batch.sizes.height[f], batch.sizes.width[f]);
    }
    Header* h = out.header;
    h->total = total;
    h->passed = passed;
    h->overflow = overflow ? 1 : 0;
    h->num_frames = num_frames;
    h->mask_bytes = bytes;
    h->mask_overflow = 0;
  }
  for (int f = tid; f < kMaxFrames; f += blockDim.x) out.header->counts[f] = counts[f];
  __syncthreads();

  for (int i = tid; i < n; i += blockDim.x) {
    if (!keep[i]) continue;
    const int f = i / num_queries;
    const int32_t r = rank[i];
    const int32_t k = first[f] + r;
    const int h = batch.sizes.height[f], w = batch.sizes.width[f];
    write_record(batch, num_queries, i, scores[i], k, mask_base[f] + r * mask_slot_bytes(params, h, w), out);
  }
}

size_t score_compact_shared_bytes(int n) { return static_cast<size_t>(n) * (sizeof(float) + sizeof(int32_t)); }

}  // namespace

void prepare_score_compact_cuda(int max_elements) {
  reserve_dynamic_shared_memory(reinterpret_cast<const void*>(score_compact_kernel), "segpost.Postprocessor",
                                score_compact_shared_bytes(max_elements), "max_frames * num_queries");
}

void score_compact_cuda(const Batch& batch, const CompactParams& params, int32_t* rank, Records out, void* stream) {
  const size_t bytes = score_compact_shared_bytes(batch.num_frames * params.num_queries);
  score_compact_kernel<<<1, kCompactThreads, bytes, static_cast<cudaStream_t>(stream)>>>(batch, params, rank, out);
  SEGPOST_CHECK_LAUNCH("score_compact");
}

}  // namespace segpost
