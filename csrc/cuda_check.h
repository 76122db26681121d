// Every CUDA call goes through SEGPOST_CUDA_CHECK: a failure becomes an exception that names
// the operation, the call and CUDA's own explanation (pybind11 turns it into RuntimeError).
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace segpost {

[[noreturn]] inline void throw_cuda_error(cudaError_t err, const char* call, const char* op) {
  throw std::runtime_error(std::string("segpost ") + op + ": " + call + " failed: " +
                           cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")");
}

}  // namespace segpost

#define SEGPOST_CUDA_CHECK(call, op)                                  \
  do {                                                                \
    const cudaError_t segpost_err_ = (call);                          \
    if (segpost_err_ != cudaSuccess) {                                \
      ::segpost::throw_cuda_error(segpost_err_, #call, op);           \
    }                                                                 \
  } while (0)

namespace segpost {

// Lets `kernel` take `bytes` of dynamic shared memory, or says which setting of `owner` asks too
// much. The attribute is one per kernel and device, shared by every instance: it is set to the
// most the device allows (always the same value), so a smaller instance built later cannot lower
// it under a larger one's launches.
inline void reserve_dynamic_shared_memory(const void* kernel, const char* owner, size_t bytes, const char* setting) {
  int device = 0, limit = 0;
  SEGPOST_CUDA_CHECK(cudaGetDevice(&device), "shared memory setup");
  SEGPOST_CUDA_CHECK(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
                     "shared memory setup");
  cudaFuncAttributes attributes{};
  SEGPOST_CUDA_CHECK(cudaFuncGetAttributes(&attributes, kernel), "shared memory setup");
  const size_t available = static_cast<size_t>(limit) - attributes.sharedSizeBytes;
  if (bytes > available) {
    throw std::invalid_argument(std::string(owner) + ": " + setting + " needs " + std::to_string(bytes) +
                                " bytes of shared memory per block; this GPU has " + std::to_string(available));
  }
  SEGPOST_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(available)),
      "shared memory setup");
}

// Restores the caller's current device after switching to an object's own (a Postprocessor's, a Tracker's).
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    SEGPOST_CUDA_CHECK(cudaGetDevice(&previous_), "set device");
    if (previous_ != device) SEGPOST_CUDA_CHECK(cudaSetDevice(device), "set device");
  }
  ~DeviceGuard() {
    int current = previous_;
    if (cudaGetDevice(&current) == cudaSuccess && current != previous_) cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

}  // namespace segpost

// After a kernel launch: catches launch-configuration errors without synchronizing.
#define SEGPOST_CHECK_LAUNCH(op) SEGPOST_CUDA_CHECK(cudaGetLastError(), op)
