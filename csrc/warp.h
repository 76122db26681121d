// Warp-wide reductions of the CUDA kernels (device code only: include from .cu files).
#pragma once

#include <cstdint>

namespace segpost {

__device__ __forceinline__ int32_t warp_sum(int32_t value) {
  for (int d = 16; d > 0; d >>= 1) value += __shfl_xor_sync(0xffffffffu, value, d);
  return value;
}

__device__ __forceinline__ int32_t warp_max(int32_t value) {
  for (int d = 16; d > 0; d >>= 1) value = max(value, __shfl_xor_sync(0xffffffffu, value, d));
  return value;
}

}  // namespace segpost
