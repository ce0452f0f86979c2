// SharedRegion: a named POSIX shared-memory segment (shm_open + mmap) holding a float arena.
//
// The parameter server creates segments for the workers on its own machine (psgrid local);
// the workers open them by name. The creator unlinks the name when the region is destroyed.
// Not thread-safe; who may write when is the protocol's business (see server/job.h).
#ifndef PSGRID_CORE_SHARED_REGION_H_
#define PSGRID_CORE_SHARED_REGION_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace psgrid {

class SharedRegion {
 public:
  // Creates (exclusively) a zero-filled segment of `floats` floats. INTERNAL naming the segment
  // when the system refuses.
  static absl::StatusOr<std::unique_ptr<SharedRegion>> Create(const std::string& name,
                                                              int64_t floats);
  // Maps an existing segment, which must hold at least `floats` floats. NOT_FOUND naming the
  // segment when it does not exist; FAILED_PRECONDITION when it is too small.
  static absl::StatusOr<std::unique_ptr<SharedRegion>> Open(const std::string& name,
                                                            int64_t floats);
  ~SharedRegion();

  // Unlinks the segments (named /psgrid-<pid>-...) that a parameter server killed before it
  // could clean up left behind: those whose process is gone. Returns how many it removed.
  static int RemoveStale();

  SharedRegion(const SharedRegion&) = delete;
  SharedRegion& operator=(const SharedRegion&) = delete;

  const std::string& name() const { return name_; }
  float* data() { return data_; }
  int64_t floats() const { return floats_; }

 private:
  SharedRegion(std::string name, float* data, int64_t floats, bool owner)
      : name_(std::move(name)), data_(data), floats_(floats), owner_(owner) {}

  std::string name_;
  float* data_;
  int64_t floats_;
  bool owner_;  // unlinks the name on destruction
};

}  // namespace psgrid

#endif  // PSGRID_CORE_SHARED_REGION_H_
