// What the built-in cells share: PyTorch's four parameters per layer (weight_ih, weight_hh, bias_ih, bias_hh)
// with `gates` blocks of hidden_size rows each, initialised U(-1/sqrt(H), 1/sqrt(H)) in PyTorch's order.
#pragma once

#include <cmath>
#include <span>
#include <type_traits>

#include "rewind/autodiff/inference.hpp"
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
  // The reference cells (fused = false) run step by step through Cell::run; the fused ones hand the whole
  // window to sequence_op(x, state..., w_ih, w_hh, b_ih, b_hh, resets) (autodiff::rnn_sequence, ...) and
  // read the state out of its rows.
  template <class SequenceOp>
  Sequence run_window(Tape& t, const Var& x, const State& s, std::span<const std::uint8_t> resets,
                      SequenceOp* sequence_op) {
    if (!fused_) return Cell::run(t, x, s, resets);
    const Var w_ih = t.param(weight_ih_), w_hh = t.param(weight_hh_);
    const Var b_ih = t.param(bias_ih_), b_hh = t.param(bias_hh_);
    const std::int64_t rows = x.shape().rows, batch = s.at(0).shape().rows;
    if constexpr (std::is_invocable_v<SequenceOp, Var, Var, Var, Var, Var, Var,
                                      std::span<const std::uint8_t>>) {
      const Var y = sequence_op(x, s[0], w_ih, w_hh, b_ih, b_hh, resets);
      return {y, {autodiff::slice_rows(y, rows - batch, rows)}};
    } else {  // two states (LSTM): h of every step, then the last c
      const Var y = sequence_op(x, s[0], s[1], w_ih, w_hh, b_ih, b_hh, resets);
      return {autodiff::slice_rows(y, 0, rows),
              {autodiff::slice_rows(y, rows - batch, rows), autodiff::slice_rows(y, rows, rows + batch)}};
    }
  }
  // infer()'s projections, into gi_ and gh_ (infer() is fused_'s step: the reference cells have none).
  void project(const Tensor& x, const Tensor& h) {
    autodiff::infer::linear(x, weight_ih_.value(), bias_ih_.value(), gi_);
    autodiff::infer::linear(h, weight_hh_.value(), bias_hh_.value(), gh_);
  }
  Var gate(const Var& all, int index) const {
    return autodiff::slice_cols(all, index * hidden_, (index + 1) * hidden_);
  }

  std::int64_t input_, hidden_;
  bool fused_;
  Parameter weight_ih_, weight_hh_, bias_ih_, bias_hh_;
  Tensor gi_, gh_, previous_;  // infer()'s buffers: the projections and the state it replaces

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
