// Data and state helpers the trainer, analysis and adaptive-trainer tests share.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "rewind/models/model.hpp"
#include "rewind/trainers/data.hpp"

namespace rwd::test {

// Random tokens of a 5-symbol vocabulary; some targets carry no loss, so the counts differ between windows.
inline std::unique_ptr<trainers::TokenData> random_tokens(std::int64_t batch, std::int64_t steps,
                                                          std::uint64_t seed) {
  auto data = std::make_unique<trainers::TokenData>(batch, steps, 5);
  std::mt19937_64 rng(seed);
  for (std::int64_t t = 0; t < steps; ++t)
    for (std::int64_t b = 0; b < batch; ++b) {
      data->input(t, b) = static_cast<std::int32_t>(rng() % 5);
      data->target(t, b) = (t * 3 + b) % 7 == 0 ? trainers::no_target : static_cast<std::int32_t>(rng() % 5);
    }
  return data;
}

// The values of every layer's state tensors, in order.
inline std::vector<autodiff::Tensor> layer_values(const models::ModelState& state) {
  std::vector<autodiff::Tensor> out;
  for (const auto& layer : state)
    for (const autodiff::Var& v : layer) out.push_back(v.value());
  return out;
}

// States S_t (before step t) of one untruncated forward pass from zero, t = 0..T, in f64, for data without
// resets: what every truncated window's start must equal.
inline std::vector<std::vector<autodiff::Tensor>> forward_states(models::Model& model,
                                                                 const trainers::Dataset& data) {
  autodiff::Tape tape(autodiff::DType::f64);
  autodiff::NoGradGuard no_grad;
  models::ModelState state;
  model.begin(tape, model.initial_state(data.batch()), state);
  std::vector<std::vector<autodiff::Tensor>> out{layer_values(state)};
  for (std::int64_t t = 0; t < data.steps(); ++t) {
    model.step(tape, data.step(t).tokens, state);
    out.push_back(layer_values(state));
  }
  return out;
}

}  // namespace rwd::test
