// Loss on held-out data without recording gradients, and text generation from a token model.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "rewind/trainers/data.hpp"
#include "rewind/trainers/export.hpp"
#include "rewind/trainers/trainer.hpp"

namespace rwd::trainers {

struct Evaluation {
  double loss = 0;  // mean over counted targets
  std::int64_t count = 0;
  std::int64_t correct = 0;
};

// Runs the whole dataset from a zero state, `window` steps per tape, under NoGradGuard.
REWIND_TRAINERS_EXPORT Evaluation evaluate(Model& model, const Dataset& data, std::int64_t window = 100);

// Feeds `prime` (token ids, at least one), then samples `length` tokens from softmax(logits / temperature).
REWIND_TRAINERS_EXPORT std::vector<std::int32_t> sample(Model& model, const std::vector<std::int32_t>& prime,
                                                        std::int64_t length, double temperature,
                                                        std::mt19937_64& rng);

}  // namespace rwd::trainers
