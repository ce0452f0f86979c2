// Rng: a small, fully specified pseudo-random generator (SplitMix64 seeding + xoshiro256**).
//
// Every value depends only on the seed, never on the standard library or the machine, so
// shuffles and initial weights are bit-identical on every worker and server. Not thread-safe.
#ifndef PSGRID_CORE_RNG_H_
#define PSGRID_CORE_RNG_H_

#include <cstdint>
#include <string_view>

namespace psgrid {

class Rng {
 public:
  explicit Rng(uint64_t seed);
  // Seeds from (seed, stream name): independent streams, e.g. one per parameter tensor.
  Rng(uint64_t seed, std::string_view stream);

  uint64_t NextU64();
  // Uniform integer in [0, bound), unbiased; bound > 0.
  uint64_t Below(uint64_t bound);
  // Uniform float in [lo, hi), from 24 random bits (exactly representable steps).
  float Uniform(float lo, float hi);

 private:
  uint64_t s_[4];
};

}  // namespace psgrid

#endif  // PSGRID_CORE_RNG_H_
