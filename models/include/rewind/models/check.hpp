// Gradient checks of whole models: how a user trusts a custom cell (rewind gradcheck uses this).
#pragma once

#include <cstdint>
#include <vector>

#include "rewind/autodiff/gradcheck.hpp"
#include "rewind/models/export.hpp"
#include "rewind/models/model.hpp"

namespace rwd::models {

struct UnrollOptions {
  std::int64_t batch = 2;
  int steps = 3;
  std::uint64_t seed = 1;
  // Optional: where to stop the gradient of the carried state (every `cut` steps; 0 = never).
  int cut = 0;
};

// Runs `steps` steps from a random initial state on random inputs (token ids for token models) and returns
// the summed loss against random targets (cross-entropy for token models, MSE otherwise). The same options
// give the same inputs, so repeated calls record the same function. Outputs of every step go to `outputs`.
REWIND_MODELS_EXPORT Var random_unroll(Model& model, Tape& tape, const UnrollOptions& options,
                                       std::vector<Tensor>* outputs = nullptr);

// Finite-difference check of every parameter's gradient through random_unroll. The model must be f64.
REWIND_MODELS_EXPORT autodiff::GradcheckReport check_gradients(
    Model& model, const UnrollOptions& unroll = {}, const autodiff::GradcheckOptions& options = {});

}  // namespace rwd::models
