#include "rewind/trainers/evaluate.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

#include "rewind/autodiff/ops.hpp"

namespace rwd::trainers {

Evaluation evaluate(Model& model, const Dataset& data, std::int64_t window) {
  autodiff::NoGradGuard no_grad;
  autodiff::EvalModeGuard eval_mode;
  Tape tape(model.config().dtype);
  std::vector<Tensor> carried = model.initial_state(data.batch());
  Evaluation e;
  double total = 0;
  for (std::int64_t begin = 0; begin < data.steps(); begin += window) {
    const std::int64_t end = std::min(begin + window, data.steps());
    tape.clear();
    ModelState state;
    model.begin(tape, carried, state);
    // Normalised by 1 so the window's loss is its sum; the mean is taken over the whole dataset below.
    const WindowResult w = record_window(model, tape, data, state,
                                         {.begin = begin,
                                          .end = end,
                                          .loss_begin = begin,
                                          .normalizer = 1.0,
                                          .save_step = end,
                                          .saved = &carried});
    if (w.loss.valid()) total += w.loss.item();
    e.count += w.count;
    e.correct += w.correct;
  }
  e.loss = e.count > 0 ? total / static_cast<double>(e.count) : 0.0;
  return e;
}

std::vector<std::int32_t> sample(Model& model, const std::vector<std::int32_t>& prime, std::int64_t length,
                                 double temperature, std::mt19937_64& rng) {
  if (!model.uses_tokens()) throw std::invalid_argument("sample: the model does not take tokens");
  if (prime.empty()) throw std::invalid_argument("sample: the prime is empty");
  if (!(temperature > 0)) throw std::invalid_argument("sample: temperature must be positive");
  if (length < 0) throw std::invalid_argument("sample: length must be >= 0, got " + std::to_string(length));
  autodiff::NoGradGuard no_grad;
  autodiff::EvalModeGuard eval_mode;
  Tape tape(model.config().dtype);
  std::vector<Tensor> carried = model.initial_state(1);
  std::vector<std::int32_t> out;
  std::int32_t next = prime[0];
  std::vector<double> weights(static_cast<std::size_t>(model.config().output_size));
  for (std::size_t i = 0; i < prime.size() + static_cast<std::size_t>(length); ++i) {
    tape.clear();
    ModelState state;
    model.begin(tape, carried, state);
    const std::int32_t token = i < prime.size() ? prime[i] : next;
    const Tensor logits = model.step(tape, std::span<const std::int32_t>(&token, 1), state).value();
    model.end(state, carried);
    double peak = -INFINITY;
    for (std::size_t c = 0; c < weights.size(); ++c)
      peak = std::max(peak, logits.get(static_cast<std::int64_t>(c)));
    for (std::size_t c = 0; c < weights.size(); ++c)
      weights[c] = std::exp((logits.get(static_cast<std::int64_t>(c)) - peak) / temperature);
    next = static_cast<std::int32_t>(
        std::discrete_distribution<std::size_t>(weights.begin(), weights.end())(rng));
    if (i + 1 >= prime.size()) out.push_back(next);
    if (static_cast<std::int64_t>(out.size()) == length) break;
  }
  return out;
}

}  // namespace rwd::trainers
