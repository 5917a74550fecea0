// What the online-gradient trainers (rtrl, uoro, snap1) share: they step through a window one step at a time,
// carry their own state beside the model's in stored_state(), and build the update's gradient in a flat
// vector over every parameter element (PyTorch's state_dict order) before it goes into the parameters, or
// (in_parameters) sum it in the parameters' own gradients or beside them.
#pragma once

#include <span>
#include <vector>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "rewind/models/model.hpp"
#include "rewind/trainers/trainer.hpp"

namespace rwd::trainers::builtin {

// Every layer's state tensors in order, as one list.
inline std::vector<autodiff::Var> flatten(const models::ModelState& state) {
  std::vector<autodiff::Var> out;
  for (const auto& layer : state) out.insert(out.end(), layer.begin(), layer.end());
  return out;
}

inline std::int64_t parameter_count(models::Model& model) {
  std::int64_t count = 0;
  for (const autodiff::Parameter* p : model.parameters()) count += p->value().numel();
  return count;
}

// f(values, count) on t's elements as their own type: per-element passes over every parameter run at memory
// speed, where Tensor::get and set would cost more than the step they serve.
template <class F>
void with_elements(autodiff::Tensor& t, F&& f) {
  if (t.dtype() == autodiff::DType::f32) {
    f(t.data<float>(), t.numel());
  } else {
    f(t.data<double>(), t.numel());
  }
}

// f(gradient, count, offset) for each parameter's gradient in order, offset its first element's flat index.
template <class F>
void for_each_gradient(models::Model& model, F&& f) {
  std::int64_t offset = 0;
  for (autodiff::Parameter* p : model.parameters()) {
    with_elements(p->grad(), [&](auto* g, std::int64_t count) { f(g, count, offset); });
    offset += p->grad().numel();
  }
}

// Every parameter's gradient from flat, in order.
inline void set_gradients(models::Model& model, std::span<const double> flat) {
  for_each_gradient(model, [&](auto* g, std::int64_t count, std::int64_t offset) {
    using T = std::remove_reference_t<decltype(*g)>;
    for (std::int64_t i = 0; i < count; ++i)
      g[i] = static_cast<T>(flat[static_cast<std::size_t>(offset + i)]);
  });
}

inline void zero_gradients(models::Model& model) {
  for (autodiff::Parameter* p : model.parameters()) p->zero_grad();
}

// An update every k steps: each step's loss gradient, computed by step(), summed into one gradient.
class OnlineGradientTrainer : public Trainer {
 public:
  // in_parameters: step() adds its gradient to the parameters' own (their type), and no flat vector is kept.
  OnlineGradientTrainer(const std::string& name, std::int64_t k, bool in_parameters = false)
      : k_(k), in_parameters_(in_parameters) {
    if (k < 1)
      throw std::invalid_argument("trainer '" + name + "': k must be >= 1, got " + std::to_string(k));
  }

  UpdateStats next(models::Model& model, const Dataset& data, autodiff::Tape& tape) override {
    const std::int64_t end = std::min(position_ + k_, steps_);
    UpdateStats stats;
    stats.first_step = position_;
    stats.end_step = end;
    stats.loss_count = count_targets(data, position_, end);
    std::vector<double> gradient(in_parameters_ ? 0 : static_cast<std::size_t>(parameter_count(model)), 0.0);
    zero_gradients(model);
    for (std::int64_t t = position_; t < end; ++t) step(model, data, tape, t, stats, gradient);
    if (!in_parameters_) set_gradients(model, gradient);
    stats.steps_recorded = end - position_;
    stats.tape = tape.memory();
    position_ = stored_step_ = end;
    return stats;
  }

 protected:
  // Step t from the stored state: adds the gradient of its loss (over stats.loss_count targets) to gradient
  // (or to the parameters' gradients, in_parameters), and its loss and correct predictions to stats; stores
  // the new state and whatever the trainer carries.
  virtual void step(models::Model& model, const Dataset& data, autodiff::Tape& tape, std::int64_t t,
                    UpdateStats& stats, std::vector<double>& gradient) = 0;

 private:
  std::int64_t k_;
  bool in_parameters_;
};

inline constexpr models::OptionSpec steps_between_updates{
    "k", models::OptionType::integer, "1", "steps between updates (the gradient of their losses)"};

}  // namespace rwd::trainers::builtin
