// Device discovery for pyfast.info(): the name of CUDA device 0, or an error string when no driver/GPU.
// Kept in the CUDA module so the CPU module never touches the CUDA runtime.
#include <cuda_runtime.h>

#include <string>

namespace pyfast {

// Returns true and fills `name` when a device is usable; false and fills `error` otherwise.
bool cuda_device_name(std::string& name, std::string& error) {
  int count = 0;
  cudaError_t st = cudaGetDeviceCount(&count);
  if (st != cudaSuccess) {
    error = cudaGetErrorString(st);
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return false;
  }
  if (count == 0) {
    error = "no CUDA device";
    return false;
  }
  cudaDeviceProp prop;
  st = cudaGetDeviceProperties(&prop, 0);
  if (st != cudaSuccess) {
    error = cudaGetErrorString(st);
    return false;
  }
  name = prop.name;
  return true;
}

}  // namespace pyfast
