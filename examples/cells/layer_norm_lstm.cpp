// LayerNorm LSTM (Ba, Kiros & Hinton 2016, "Layer normalization", section 3.1): the input and recurrent
// projections are normalised apart, and so is the cell before its output.
//   [i f g o] = LN(W x; a_x, 0) + LN(U h; a_h, 0) + b
//   c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
//   h' = sigmoid(o) * tanh(LN(c'; a_c, b_c))
#include "common.hpp"

namespace zoo {
namespace {

Tensor filled(Shape shape, rwd::autodiff::DType dtype, double value) {
  Tensor t(shape, dtype);
  t.fill(value);
  return t;
}

class LayerNormLstm final : public Cell {
 public:
  explicit LayerNormLstm(const CellSpec& s)
      : input_(s.input_size),
        hidden_(s.hidden_size),
        w_(param(s, "weight_ih", Shape::matrix(4 * hidden_, input_))),
        u_(param(s, "weight_hh", Shape::matrix(4 * hidden_, hidden_))),
        b_(param(s, "bias", Shape::vector(4 * hidden_))),
        gain_x_(s.name("ln_ih.weight"), filled(Shape::vector(4 * hidden_), s.dtype, 1)),
        gain_h_(s.name("ln_hh.weight"), filled(Shape::vector(4 * hidden_), s.dtype, 1)),
        gain_c_(s.name("ln_c.weight"), filled(Shape::vector(hidden_), s.dtype, 1)),
        bias_c_(s.name("ln_c.bias"), filled(Shape::vector(hidden_), s.dtype, 0)),
        zeros_(Shape::vector(4 * hidden_), s.dtype) {}

  std::int64_t input_size() const override { return input_; }
  std::int64_t hidden_size() const override { return hidden_; }
  int state_size() const override { return 2; }
  std::vector<Parameter*> parameters() override {
    return {&w_, &u_, &b_, &gain_x_, &gain_h_, &gain_c_, &bias_c_};
  }

  State step(Tape& t, const Var& x, const State& s) override {
    const Var no_shift = t.input(zeros_);  // a constant: the projections' shift is b alone
    const Var gates = layer_norm(linear(t, x, w_), t.param(gain_x_), no_shift) +
                      layer_norm(linear(t, s[0], u_), t.param(gain_h_), no_shift) + t.param(b_);
    auto gate = [&](int k) { return slice_cols(gates, k * hidden_, (k + 1) * hidden_); };
    const Var c = sigmoid(gate(1)) * s[1] + sigmoid(gate(0)) * tanh(gate(2));
    return {sigmoid(gate(3)) * tanh(layer_norm(c, t.param(gain_c_), t.param(bias_c_))), c};
  }

 private:
  std::int64_t input_, hidden_;
  Parameter w_, u_, b_, gain_x_, gain_h_, gain_c_, bias_c_;
  Tensor zeros_;
};

std::unique_ptr<Cell> create(const CellSpec& spec) {
  return std::make_unique<LayerNormLstm>(spec);
}

}  // namespace
}  // namespace zoo

extern const rwd::plugins::Descriptor layer_norm_lstm_descriptor = rwd::plugins::model_descriptor(
    "layer_norm_lstm", "LayerNorm LSTM (Ba, Kiros & Hinton 2016)", zoo::create);
REWIND_PLUGIN(layer_norm_lstm_descriptor)
