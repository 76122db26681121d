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

// After a kernel launch: catches launch-configuration errors without synchronizing.
#define SEGPOST_CHECK_LAUNCH(op) SEGPOST_CUDA_CHECK(cudaGetLastError(), op)
