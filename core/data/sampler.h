// BatchSampler: which samples each of `world_size` workers trains on, step by step.
//
// Epoch e uses a permutation P_e of 0..N-1: the identity without shuffle; with shuffle,
//   P = identity; Rng rng(seed, "epoch/" + std::to_string(e));
//   for i = N-1 down to 1: swap(P[i], P[rng.Below(i + 1)]);
// which depends only on (N, seed, e), so every machine computes the same one.
// Step t covers positions [t*W*B, min((t+1)*W*B, N)) of P_e, split into W consecutive slices of
// B; rank r gets slice r (shorter or empty at the tail of the epoch). So the ranks' parts are
// disjoint and together cover the epoch exactly once, and without shuffle step t of W workers of
// batch B trains on exactly the samples t*W*B ... (t+1)*W*B-1 that one process with batch W*B
// would see.
//
//   BatchSampler sampler(data.size(), /*batch_per_worker=*/64, world_size, true, seed);
//   sampler.StartEpoch(epoch);
//   for (int64_t t = 0; t < sampler.steps_per_epoch(); ++t) Use(sampler.Batch(t, rank));
//
// Not thread-safe.
#ifndef PSGRID_CORE_DATA_SAMPLER_H_
#define PSGRID_CORE_DATA_SAMPLER_H_

#include <cstdint>
#include <span>
#include <vector>

namespace psgrid {

class BatchSampler {
 public:
  // num_samples >= 0, batch_per_worker >= 1, world_size >= 1 (CHECKed: the caller validates
  // its configuration).
  BatchSampler(int64_t num_samples, int64_t batch_per_worker, int world_size, bool shuffle,
               uint64_t seed);

  // ceil(N / (W*B)); 0 when N is 0.
  int64_t steps_per_epoch() const {
    return StepsPerEpoch(num_samples_, batch_per_worker_, world_size_);
  }
  static int64_t StepsPerEpoch(int64_t num_samples, int64_t batch_per_worker, int world_size);
  // The steps of a whole job: steps_per_epoch × epochs, capped at max_steps when that is > 0.
  static int64_t PlannedSteps(int64_t steps_per_epoch, int64_t epochs, int64_t max_steps);
  // Makes `epoch` (>= 0) current, computing its permutation; cheap when it already is.
  void StartEpoch(int64_t epoch);
  // The sample indices of rank `rank` at step `step` of the current epoch; may be empty.
  // Valid until the next StartEpoch. Requires StartEpoch first, 0 <= step < steps_per_epoch()
  // and 0 <= rank < world_size (CHECKed).
  std::span<const int64_t> Batch(int64_t step, int rank) const;

 private:
  int64_t num_samples_;
  int64_t batch_per_worker_;
  int world_size_;
  bool shuffle_;
  uint64_t seed_;
  int64_t epoch_ = -1;          // -1 until StartEpoch
  std::vector<int64_t> order_;  // P_epoch_
};

}  // namespace psgrid

#endif  // PSGRID_CORE_DATA_SAMPLER_H_
