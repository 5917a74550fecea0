#include "rewind/trainers/trainer.hpp"

#include <stdexcept>

#include "rewind/autodiff/ops.hpp"

namespace rwd::trainers {

using autodiff::DType;
using autodiff::Shape;

Trainer::~Trainer() = default;

void Trainer::begin(Model& model, const Dataset& data, Tape& tape) {
  if (data.vocab_size() > 0 && model.config().vocab_size != data.vocab_size())
    throw std::invalid_argument("trainer: the data has a vocabulary of " + std::to_string(data.vocab_size()) +
                                ", the model " + std::to_string(model.config().vocab_size));
  if (data.vocab_size() == 0 &&
      (model.config().input_size != data.input_size() || model.config().output_size != data.output_size()))
    throw std::invalid_argument("trainer: the data has " + std::to_string(data.input_size()) +
                                " inputs and " + std::to_string(data.output_size()) +
                                " targets per step, the model " + std::to_string(model.config().input_size) +
                                " and " + std::to_string(model.config().output_size));
  position_ = 0;
  steps_ = data.steps();
  stored_ = model.initial_state(data.batch());
  stored_step_ = 0;
  tape.clear();
  tape.reset_peak();
}

void Trainer::restore(std::int64_t position, std::int64_t stored_step, std::vector<Tensor> stored) {
  if (position < 0 || position > steps_ || stored_step < 0 || stored_step > position ||
      stored.size() != stored_.size())
    throw std::invalid_argument("trainer: the saved position does not fit this trainer and data");
  position_ = position;
  stored_step_ = stored_step;
  stored_ = std::move(stored);
}

std::int64_t count_targets(const Dataset& data, std::int64_t begin, std::int64_t end) {
  std::int64_t count = 0;
  for (std::int64_t t = begin; t < end; ++t) {
    const Step s = data.step(t);
    if (s.target_values != nullptr) {
      if (!s.has_loss) continue;
      const std::int64_t per_row = s.target_values->shape().cols;
      if (s.loss_rows.empty()) {
        count += s.target_values->numel();
      } else {
        for (std::uint8_t keep : s.loss_rows) count += keep ? per_row : 0;
      }
    } else {
      for (std::int32_t target : s.target_tokens) count += target != no_target;
    }
  }
  return count;
}

namespace {

// mask [rows, cols] of ones, with zero rows where keep[b] is 0.
void set_row_mask(std::span<const std::uint8_t> keep, Shape shape, DType dtype, Tensor& mask) {
  if (mask.shape() != shape || mask.dtype() != dtype) mask = Tensor(shape, dtype);
  for (std::int64_t b = 0; b < shape.rows; ++b)
    for (std::int64_t j = 0; j < shape.cols; ++j)
      mask.set(b * shape.cols + j, keep[static_cast<std::size_t>(b)] ? 1.0 : 0.0);
}

// Rows that restart here get a zero state, and nothing before the restart receives their gradient.
void apply_reset(Tape& tape, const Model& model, std::span<const std::uint8_t> reset, ModelState& state,
                 Tensor& mask) {
  std::vector<std::uint8_t> keep(reset.size());
  for (std::size_t b = 0; b < reset.size(); ++b) keep[b] = reset[b] ? 0 : 1;
  set_row_mask(keep, Shape::matrix(static_cast<std::int64_t>(reset.size()), model.config().hidden_size),
               tape.dtype(), mask);
  const Var keep_rows = tape.input(mask);
  for (models::State& layer : state)
    for (Var& v : layer) v = v * keep_rows;
}

template <class T>
std::int64_t count_correct(const Var& logits, std::span<const std::int32_t> targets) {
  const auto values = logits.values<T>();
  const std::int64_t classes = logits.shape().cols;
  std::int64_t correct = 0;
  for (std::size_t b = 0; b < targets.size(); ++b) {
    if (targets[b] == no_target) continue;
    const T* row = values.data() + static_cast<std::int64_t>(b) * classes;
    correct += std::max_element(row, row + classes) - row == targets[b];
  }
  return correct;
}

}  // namespace

WindowResult record_window(Model& model, Tape& tape, const Dataset& data, ModelState& state,
                           std::int64_t begin, std::int64_t end, std::int64_t loss_begin, double normalizer,
                           std::int64_t save_step, std::vector<Tensor>* saved) {
  WindowResult result;
  const std::int64_t counted = count_targets(data, std::max(begin, loss_begin), end);
  const double norm = normalizer > 0 ? normalizer : static_cast<double>(counted);
  Tensor mask, loss_mask, converted;
  for (std::int64_t t = begin; t < end; ++t) {
    if (t == save_step && saved != nullptr) model.end(state, *saved);
    const Step s = data.step(t);
    if (!s.reset.empty()) apply_reset(tape, model, s.reset, state, mask);
    Var y;
    if (s.features == nullptr) {
      y = model.step(tape, s.tokens, state);
    } else {
      y = model.step(
          tape,
          tape.input(s.features->dtype() == tape.dtype() ? *s.features
                                                         : (converted = s.features->to(tape.dtype()))),
          state);
    }
    if (t < loss_begin) continue;
    Var step_loss;
    if (s.target_values != nullptr) {
      if (!s.has_loss) continue;
      const Tensor& target = s.target_values->dtype() == tape.dtype()
                                 ? *s.target_values
                                 : (converted = s.target_values->to(tape.dtype()));
      const std::int64_t here = count_targets(data, t, t + 1);
      if (here == 0) continue;
      if (!s.loss_rows
               .empty()) {  // masked rows: prediction times 0 against a target of 0, so no loss, no gradient
        set_row_mask(s.loss_rows, target.shape(), tape.dtype(), loss_mask);
        y = y * tape.input(loss_mask);
      }
      step_loss =
          autodiff::scale(autodiff::mse(y, tape.input(target)), static_cast<double>(target.numel()) / norm);
      result.count += here;
    } else {
      std::int64_t here = 0;
      for (std::int32_t target : s.target_tokens) here += target != no_target;
      if (here == 0) continue;
      step_loss = autodiff::softmax_cross_entropy(y, s.target_tokens,
                                                  {.ignore_index = no_target, .normalizer = norm});
      result.count += here;
      result.correct += tape.dtype() == DType::f32 ? count_correct<float>(y, s.target_tokens)
                                                   : count_correct<double>(y, s.target_tokens);
    }
    result.loss = result.loss.valid() ? result.loss + step_loss : step_loss;
  }
  if (save_step == end && saved != nullptr) model.end(state, *saved);
  return result;
}

}  // namespace rwd::trainers
