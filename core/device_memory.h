// DeviceMemory: the memory of a compute device, and the copies in, out of and within it.
//
// Backend (core/backend/backend.h) derives from it: a backend's operations take buffers of its
// own device. Tensor (core/tensor.h) allocates through it, so that a model's tensors can live
// on the device its backend computes on:
//
//   Tensor w({256, 784}, &backend);   // device memory when !backend.is_host(), else host
//   w.Write(0, host_values);          // host → device
//
// Where is_host() is true (the CPU backend) device memory is host memory and the copies are
// memcpy; callers (Tensor, Model) then keep plain host tensors, so the CPU paths are unchanged.
//
// Ordering: the operations of one device run in the order they are called, copies included.
// Those that return data to the host (CopyToHost) wait for it; the others may still be running
// on the device when they return. Not thread-safe (as Backend: one thread at a time).
#ifndef PSGRID_CORE_DEVICE_MEMORY_H_
#define PSGRID_CORE_DEVICE_MEMORY_H_

#include <cstddef>
#include <cstdint>

namespace psgrid {

class DeviceMemory {
 public:
  virtual ~DeviceMemory() = default;

  // true when the device's memory is host memory (the CPU backend).
  virtual bool is_host() const = 0;

  // `bytes` of device memory, aligned to 64 bytes at least, contents undefined. Null when bytes
  // is 0 or the device has not that much memory left.
  virtual void* AllocateBytes(size_t bytes) = 0;
  // n floats of device memory (AllocateBytes of n·4 bytes).
  float* AllocateFloats(int64_t n) {
    return static_cast<float*>(AllocateBytes(static_cast<size_t>(n) * sizeof(float)));
  }
  // Frees what AllocateBytes returned (null: nothing), after the work queued on it is done.
  virtual void Free(void* p) = 0;

  // Copies `bytes` from host memory src to device memory dst, after the operations called
  // before it. On return src may be reused; the operations called after it see the data.
  virtual void CopyToDevice(void* dst, const void* src, size_t bytes) = 0;
  // Copies `bytes` from device memory src to host memory dst once the operations called
  // before it are done; on return dst holds the data.
  virtual void CopyToHost(void* dst, const void* src, size_t bytes) = 0;
  // Copies `bytes` from device memory src to device memory dst (not overlapping), in order
  // with the other operations (it may still be running on return).
  virtual void CopyOnDevice(void* dst, const void* src, size_t bytes) = 0;
  // y[0, n) = 0 in device memory.
  virtual void FillZeros(int64_t n, float* y) = 0;
  // Returns when every operation called so far has finished (CPU: at once).
  virtual void Synchronize() = 0;

  // Host memory from which, and into which, CopyToDevice and CopyToHost are fastest: page-locked
  // (pinned) on a GPU, so that the copies are one DMA with no staging; plain host memory
  // elsewhere (these defaults). 64-byte aligned; null when bytes is 0 or on failure. Freed by
  // FreePinnedHost (null: nothing).
  virtual void* AllocatePinnedHost(size_t bytes);
  virtual void FreePinnedHost(void* p);

  // Device → host copies that overlap the work called after them (a layer's gradient leaving
  // the GPU while backward goes on). CopyToHostAsync queues a copy of `bytes` from device src
  // to host dst (pinned: AllocatePinnedHost, for a copy that does not stall) that starts once
  // the operations called before it are done, and returns a ticket at once. Until the copy is
  // done, src must not change and dst must not be read. CopyDone(t) says without waiting whether
  // copy t, and every copy queued before it, has landed; WaitCopy(t) returns once it has. These
  // defaults copy at once (CopyToHost) and return ticket 0, which is always done.
  virtual uint64_t CopyToHostAsync(void* dst, const void* src, size_t bytes);
  virtual bool CopyDone(uint64_t ticket);
  virtual void WaitCopy(uint64_t ticket);
};

// The memory a device tensor of `memory` should use: `memory` itself, or null (plain host
// tensors) when it is host memory or null.
inline DeviceMemory* DeviceOrNull(DeviceMemory* memory) {
  return memory != nullptr && !memory->is_host() ? memory : nullptr;
}

}  // namespace psgrid

#endif  // PSGRID_CORE_DEVICE_MEMORY_H_
