#include "core/data/sampler.h"

#include <algorithm>
#include <numeric>
#include <string>
#include <utility>

#include "core/check.h"
#include "core/rng.h"

namespace psgrid {

BatchSampler::BatchSampler(int64_t num_samples, int64_t batch_per_worker, int world_size,
                           bool shuffle, uint64_t seed)
    : num_samples_(num_samples),
      batch_per_worker_(batch_per_worker),
      world_size_(world_size),
      shuffle_(shuffle),
      seed_(seed) {
  PSGRID_CHECK(num_samples >= 0, "BatchSampler needs num_samples >= 0");
  PSGRID_CHECK(batch_per_worker >= 1, "BatchSampler needs batch_per_worker >= 1");
  PSGRID_CHECK(world_size >= 1, "BatchSampler needs world_size >= 1");
}

int64_t BatchSampler::StepsPerEpoch(int64_t num_samples, int64_t batch_per_worker,
                                    int world_size) {
  const int64_t per_step = batch_per_worker * world_size;
  return (num_samples + per_step - 1) / per_step;
}

int64_t BatchSampler::PlannedSteps(int64_t steps_per_epoch, int64_t epochs, int64_t max_steps) {
  const int64_t steps = steps_per_epoch * epochs;
  return max_steps > 0 ? std::min(steps, max_steps) : steps;
}

void BatchSampler::StartEpoch(int64_t epoch) {
  PSGRID_CHECK(epoch >= 0, "BatchSampler epochs start at 0");
  if (epoch == epoch_) return;
  order_.resize(num_samples_);
  std::iota(order_.begin(), order_.end(), int64_t{0});
  if (shuffle_) {
    // Fisher-Yates, exactly as documented in the header: part of the cross-machine contract.
    Rng rng(seed_, "epoch/" + std::to_string(epoch));
    for (int64_t i = num_samples_ - 1; i >= 1; --i) {
      const int64_t j = static_cast<int64_t>(rng.Below(static_cast<uint64_t>(i) + 1));
      std::swap(order_[i], order_[j]);
    }
  }
  epoch_ = epoch;
}

std::span<const int64_t> BatchSampler::Batch(int64_t step, int rank) const {
  PSGRID_CHECK(epoch_ >= 0, "BatchSampler::Batch before StartEpoch");
  PSGRID_CHECK(step >= 0 && step < steps_per_epoch(), "BatchSampler step out of range");
  PSGRID_CHECK(rank >= 0 && rank < world_size_, "BatchSampler rank out of range");
  const int64_t begin = std::min(num_samples_, (step * world_size_ + rank) * batch_per_worker_);
  const int64_t end = std::min(num_samples_, begin + batch_per_worker_);
  return std::span<const int64_t>(order_).subspan(begin, end - begin);
}

}  // namespace psgrid
