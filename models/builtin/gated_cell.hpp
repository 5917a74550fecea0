// What the built-in cells share: PyTorch's four parameters per layer (weight_ih, weight_hh, bias_ih, bias_hh)
// with `gates` blocks of hidden_size rows each, initialised U(-1/sqrt(H), 1/sqrt(H)) in PyTorch's order.
#pragma once

#include <cmath>

#include "rewind/autodiff/ops.hpp"
#include "rewind/models/cell.hpp"

namespace rwd::models::builtin {

using autodiff::Shape;
using autodiff::Transpose;

class GatedCell : public Cell {
 public:
  GatedCell(const CellSpec& spec, std::int64_t gates)
      : input_(spec.input_size),
        hidden_(spec.hidden_size),
        fused_(spec.options.boolean("fused")),
        weight_ih_(spec.name("weight_ih"), init(spec, Shape::matrix(gates * hidden_, input_))),
        weight_hh_(spec.name("weight_hh"), init(spec, Shape::matrix(gates * hidden_, hidden_))),
        bias_ih_(spec.name("bias_ih"), init(spec, Shape::vector(gates * hidden_))),
        bias_hh_(spec.name("bias_hh"), init(spec, Shape::vector(gates * hidden_))) {}

  std::int64_t input_size() const override { return input_; }
  std::int64_t hidden_size() const override { return hidden_; }
  std::vector<Parameter*> parameters() override { return {&weight_ih_, &weight_hh_, &bias_ih_, &bias_hh_}; }

 protected:
  // Input and hidden projections of every gate at once, x W_ih^T + b_ih and h W_hh^T + b_hh: one GEMM each.
  Var input_gates(Tape& t, const Var& x) {
    return fused_
               ? autodiff::linear(x, t.param(weight_ih_), t.param(bias_ih_))
               : autodiff::matmul(x, t.param(weight_ih_), Transpose::no, Transpose::yes) + t.param(bias_ih_);
  }
  Var hidden_gates(Tape& t, const Var& h) {
    return fused_
               ? autodiff::linear(h, t.param(weight_hh_), t.param(bias_hh_))
               : autodiff::matmul(h, t.param(weight_hh_), Transpose::no, Transpose::yes) + t.param(bias_hh_);
  }
  Var gate(const Var& all, int index) const {
    return autodiff::slice_cols(all, index * hidden_, (index + 1) * hidden_);
  }

  std::int64_t input_, hidden_;
  bool fused_;
  Parameter weight_ih_, weight_hh_, bias_ih_, bias_hh_;

 private:
  Tensor init(const CellSpec& spec, Shape shape) {
    return spec.initializer->uniform(shape, spec.dtype,
                                     1.0 / std::sqrt(static_cast<double>(spec.hidden_size)));
  }
};

inline constexpr models::OptionSpec fused_option{
    "fused", models::OptionType::boolean, "true",
    "use the fused kernels; false runs the reference cell built from primitive ops only"};

}  // namespace rwd::models::builtin
