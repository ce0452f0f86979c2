// Weight initialisation with a fixed seed: identical weights on every machine.
//
// he:     W ~ U(−√(6/fan_in), √(6/fan_in))             (torch.nn.init.kaiming_uniform_, relu)
// xavier: W ~ U(−√(6/(fan_in+fan_out)), +√(...))        (torch.nn.init.xavier_uniform_)
// Biases start at zero. Each tensor draws from its own stream Rng(seed, name), so its values
// do not depend on the other parameters (a server shard can initialise its part alone).
#ifndef PSGRID_CORE_INIT_H_
#define PSGRID_CORE_INIT_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "core/parameters.h"

namespace psgrid {

// INVALID_ARGUMENT for an unknown scheme.
absl::Status InitializeParameters(const std::string& scheme, uint64_t seed, ParameterSet* params);

}  // namespace psgrid

#endif  // PSGRID_CORE_INIT_H_
