// What the online-gradient trainers (rtrl, uoro) share: they step through a window one step at a time,
// carry their own state beside the model's in stored_state(), and build the update's gradient in a flat
// vector over every parameter element (PyTorch's state_dict order) before it goes into the parameters.
#pragma once

#include <span>
#include <vector>

#include <algorithm>
#include <stdexcept>
#include <string>

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

// flat += scale * every parameter's gradient, in order.
inline void add_gradients(models::Model& model, std::span<double> flat, double scale = 1.0) {
  std::size_t k = 0;
  for (autodiff::Parameter* p : model.parameters())
    for (std::int64_t i = 0; i < p->grad().numel(); ++i) flat[k++] += scale * p->grad().get(i);
}

// Every parameter's gradient from flat, in order.
inline void set_gradients(models::Model& model, std::span<const double> flat) {
  std::size_t k = 0;
  for (autodiff::Parameter* p : model.parameters())
    for (std::int64_t i = 0; i < p->grad().numel(); ++i) p->grad().set(i, flat[k++]);
}

inline void zero_gradients(models::Model& model) {
  for (autodiff::Parameter* p : model.parameters()) p->zero_grad();
}

// An update every k steps: each step's loss gradient, computed by step(), summed into one gradient.
class OnlineGradientTrainer : public Trainer {
 public:
  OnlineGradientTrainer(const std::string& name, std::int64_t k) : k_(k) {
    if (k < 1)
      throw std::invalid_argument("trainer '" + name + "': k must be >= 1, got " + std::to_string(k));
  }

  UpdateStats next(models::Model& model, const Dataset& data, autodiff::Tape& tape) override {
    const std::int64_t end = std::min(position_ + k_, steps_);
    UpdateStats stats;
    stats.first_step = position_;
    stats.end_step = end;
    stats.loss_count = count_targets(data, position_, end);
    std::vector<double> gradient(static_cast<std::size_t>(parameter_count(model)), 0.0);
    for (std::int64_t t = position_; t < end; ++t)
      stats.loss += step(model, data, tape, t, stats.loss_count, gradient);
    set_gradients(model, gradient);
    stats.steps_recorded = end - position_;
    stats.tape = tape.memory();
    position_ = stored_step_ = end;
    return stats;
  }

 protected:
  // Step t from the stored state: adds the gradient of its loss (over `count` targets) to gradient, stores
  // the new state and whatever the trainer carries, and returns the step's loss.
  virtual double step(models::Model& model, const Dataset& data, autodiff::Tape& tape, std::int64_t t,
                      std::int64_t count, std::vector<double>& gradient) = 0;

 private:
  std::int64_t k_;
};

inline constexpr models::OptionSpec steps_between_updates{
    "k", models::OptionType::integer, "1", "steps between updates (the gradient of their losses)"};

}  // namespace rwd::trainers::builtin
