// What the online-gradient trainers (rtrl, uoro) share: they step through a window one step at a time,
// carry their own state beside the model's in stored_state(), and build the update's gradient in a flat
// vector over every parameter element (PyTorch's state_dict order) before it goes into the parameters.
#pragma once

#include <span>
#include <vector>

#include "rewind/models/model.hpp"

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

}  // namespace rwd::trainers::builtin
