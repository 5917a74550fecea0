#include "rewind/trainers/trainer.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "rewind/autodiff/ops.hpp"

namespace rwd::trainers {

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

UpdateStats Trainer::truncated_update(Model& model, const Dataset& data, Tape& tape, std::int64_t k1,
                                      std::int64_t k2, std::int64_t next_k1, std::int64_t next_k2) {
  const std::int64_t end = std::min(position_ + k1, steps_);
  const std::int64_t start = std::max<std::int64_t>(0, end - k2);
  // The next update unrolls from next_start, saved on the way: it must lie in [start, end], which holds while
  // next_k2 <= k2 + next_k1 (a k2 that grows faster has no stored state to start from; refused below). After
  // the last update the state at the end of the pass is kept.
  const std::int64_t next_start =
      end == steps_ ? end : std::max<std::int64_t>(0, std::min(end + next_k1, steps_) - next_k2);
  if (stored_step_ != start)
    throw std::logic_error("trainer: stored state is for step " + std::to_string(stored_step_) +
                           ", the update starts at " + std::to_string(start));
  if (next_start < start)
    throw std::logic_error("trainer: the next update would start at step " + std::to_string(next_start) +
                           ", before this update's unroll (" + std::to_string(start) + ")");
  for (autodiff::Parameter* p : model.parameters()) p->zero_grad();
  tape.clear();
  ModelState state;
  model.begin(tape, stored_, state);
  std::vector<Tensor> next_state;
  const WindowResult w = record_window(
      model, tape, data, state,
      {.begin = start, .end = end, .loss_begin = position_, .save_step = next_start, .saved = &next_state});
  if (w.loss.valid() && w.loss.requires_grad()) tape.backward(w.loss);
  const UpdateStats stats{.loss = w.loss.valid() ? w.loss.item() : 0.0,
                          .loss_count = w.count,
                          .correct = w.correct,
                          .first_step = position_,
                          .end_step = end,
                          .steps_recorded = end - start,
                          .tape = tape.memory(),
                          .k1 = k1,
                          .k2 = k2};
  stored_ = std::move(next_state);
  stored_step_ = next_start;
  position_ = end;
  return stats;
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

// Rows [t * batch, (t + 1) * batch) of a window-wide tensor from one step's [batch, cols] tensor.
void copy_step_rows(const Tensor& step, Tensor& window, std::int64_t t) {
  const Tensor converted = step.dtype() == window.dtype() ? Tensor() : step.to(window.dtype());
  const Tensor& src = converted.has_storage() ? converted : step;
  std::memcpy(static_cast<std::byte*>(window.raw()) + t * src.bytes(), src.raw(), src.bytes());
}

// Where step t's rows start in a window-wide tensor of steps from `begin`.
std::ptrdiff_t first_row(std::int64_t t, std::int64_t begin, std::int64_t batch) {
  return static_cast<std::ptrdiff_t>((t - begin) * batch);
}

// t with this shape and dtype, zeroed: reused when it has them already.
Tensor& zeroed(Tensor& t, Shape shape, autodiff::DType dtype) {
  if (!t.has_storage() || t.shape() != shape || t.dtype() != dtype) {
    t = Tensor(shape, dtype);
  } else {
    t.fill(0.0);
  }
  return t;
}

// Steps [begin, end) as one Model::run, with the loss over those at or after loss_begin added to `result`.
void record_segment(Model& model, Tape& tape, const Dataset& data, ModelState& state, std::int64_t begin,
                    std::int64_t end, std::int64_t loss_begin, double norm, WindowResult& result,
                    WindowBuffers::Segment& buffers) {
  const std::int64_t batch = data.batch(), steps = end - begin, rows = steps * batch;
  std::vector<std::uint8_t>& resets = buffers.resets;
  resets.clear();
  for (std::int64_t t = begin; t < end; ++t) {
    const Step s = data.step(t);
    if (s.reset.empty()) continue;
    resets.resize(static_cast<std::size_t>(rows));
    std::copy(s.reset.begin(), s.reset.end(), resets.begin() + first_row(t, begin, batch));
  }
  Var features;
  const bool tokens = data.step(begin).features == nullptr;
  if (tokens) {
    std::vector<std::int32_t>& ids = buffers.ids;
    ids.resize(static_cast<std::size_t>(rows));
    for (std::int64_t t = begin; t < end; ++t)
      std::ranges::copy(data.step(t).tokens, ids.begin() + first_row(t, begin, batch));
    features = model.features(tape, ids, state, resets);
  } else {
    Tensor& x = zeroed(buffers.features, Shape::matrix(rows, data.input_size()), tape.dtype());
    for (std::int64_t t = begin; t < end; ++t) copy_step_rows(*data.step(t).features, x, t - begin);
    features = model.features(tape, tape.input(x), state, resets);
  }
  record_loss(model, tape, data, features, begin, end, loss_begin, norm, result, &buffers);
}

}  // namespace

void record_loss(Model& model, Tape& tape, const Dataset& data, const Var& features, std::int64_t begin,
                 std::int64_t end, std::int64_t loss_begin, double norm, WindowResult& result,
                 WindowBuffers::Segment* buffers) {
  WindowBuffers::Segment temporary;
  WindowBuffers::Segment& b = buffers ? *buffers : temporary;
  const std::int64_t batch = data.batch(), rows = (end - begin) * batch;
  const std::int64_t here = count_targets(data, std::max(begin, loss_begin), end);
  if (here == 0) return;  // no head needed
  Var loss;
  if (data.step(begin).features == nullptr) {
    std::vector<std::int32_t>& targets = b.target_ids;
    targets.assign(static_cast<std::size_t>(rows), no_target);
    for (std::int64_t t = std::max(begin, loss_begin); t < end; ++t)
      std::ranges::copy(data.step(t).target_tokens, targets.begin() + first_row(t, begin, batch));
    std::int64_t correct = 0;
    loss = model.cross_entropy(tape, features, targets,
                               {.ignore_index = no_target, .normalizer = norm, .correct = &correct});
    result.correct += correct;
  } else {
    const Var y = model.head(tape, features);
    // Rows without a loss are multiplied by zero against a target of zero: no loss, no gradient.
    Tensor& target = zeroed(b.targets, Shape::matrix(rows, data.output_size()), tape.dtype());
    Tensor& keep = zeroed(b.keep, target.shape(), tape.dtype());
    for (std::int64_t t = std::max(begin, loss_begin); t < end; ++t) {
      const Step s = data.step(t);
      if (!s.has_loss) continue;
      copy_step_rows(*s.target_values, target, t - begin);
      for (std::int64_t b = 0; b < batch; ++b) {
        const bool counted = s.loss_rows.empty() || s.loss_rows[static_cast<std::size_t>(b)] != 0;
        for (std::int64_t j = 0; j < target.shape().cols; ++j) {
          const std::int64_t i = ((t - begin) * batch + b) * target.shape().cols + j;
          keep.set(i, counted ? 1.0 : 0.0);
          if (!counted) target.set(i, 0.0);
        }
      }
    }
    loss = autodiff::mse(y * tape.input(keep), tape.input(target), norm);
  }
  result.count += here;
  result.loss = result.loss.valid() ? result.loss + loss : loss;
}

WindowResult record_window(Model& model, Tape& tape, const Dataset& data, ModelState& state,
                           const Window& w) {
  tape.random_key().window = static_cast<std::uint64_t>(w.begin);
  WindowBuffers temporary;
  WindowBuffers& buffers = w.buffers ? *w.buffers : temporary;
  WindowResult result;
  const double counted = static_cast<double>(count_targets(data, std::max(w.begin, w.loss_begin), w.end));
  const double norm = w.normalizer > 0 ? w.normalizer : counted;
  // The state wanted at save_step splits the window there: the end of one run is the start of the next.
  const bool split = w.saved != nullptr && w.save_step > w.begin && w.save_step < w.end;
  if (w.saved != nullptr && w.save_step == w.begin) model.end(state, *w.saved);
  if (split) {
    record_segment(model, tape, data, state, w.begin, w.save_step, w.loss_begin, norm, result,
                   buffers.segments[0]);
    model.end(state, *w.saved);
    record_segment(model, tape, data, state, w.save_step, w.end, w.loss_begin, norm, result,
                   buffers.segments[1]);
  } else if (w.end > w.begin) {
    record_segment(model, tape, data, state, w.begin, w.end, w.loss_begin, norm, result, buffers.segments[1]);
  }
  if (w.saved != nullptr && w.save_step == w.end && w.end > w.begin) model.end(state, *w.saved);
  return result;
}

}  // namespace rwd::trainers
