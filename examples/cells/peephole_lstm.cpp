// Peephole LSTM (Gers, Schraudolph & Schmidhuber 2002): the gates also read the cell, through vectors p.
//   i  = sigmoid(W_i x + U_i h + p_i * c + b_i)
//   f  = sigmoid(W_f x + U_f h + p_f * c + b_f)
//   c' = f * c + i * tanh(W_g x + U_g h + b_g)
//   o  = sigmoid(W_o x + U_o h + p_o * c' + b_o)
//   h' = o * tanh(c')
#include "common.hpp"

namespace zoo {
namespace {

class PeepholeLstm final : public Cell {
 public:
  explicit PeepholeLstm(const CellSpec& s)
      : input_(s.input_size),
        hidden_(s.hidden_size),
        w_(param(s, "weight_ih", Shape::matrix(4 * hidden_, input_))),  // [W_i; W_f; W_g; W_o]
        u_(param(s, "weight_hh", Shape::matrix(4 * hidden_, hidden_))),
        b_(param(s, "bias", Shape::vector(4 * hidden_))),
        p_(param(s, "weight_peephole", Shape::vector(3 * hidden_))) {}  // [p_i; p_f; p_o]

  std::int64_t input_size() const override { return input_; }
  std::int64_t hidden_size() const override { return hidden_; }
  int state_size() const override { return 2; }
  std::vector<Parameter*> parameters() override { return {&w_, &u_, &b_, &p_}; }

  State step(Tape& t, const Var& x, const State& s) override {
    const Var& h = s[0];
    const Var& c = s[1];
    const Var gates = linear(t, x, w_) + linear(t, h, u_) + t.param(b_);
    const Var peep = t.param(p_);
    auto gate = [&](int k) { return slice_cols(gates, k * hidden_, (k + 1) * hidden_); };
    auto peephole = [&](int k) { return slice_cols(peep, k * hidden_, (k + 1) * hidden_); };
    const Var i = sigmoid(gate(0) + peephole(0) * c);
    const Var f = sigmoid(gate(1) + peephole(1) * c);
    const Var c_next = f * c + i * tanh(gate(2));
    const Var o = sigmoid(gate(3) + peephole(2) * c_next);
    return {o * tanh(c_next), c_next};
  }

 private:
  std::int64_t input_, hidden_;
  Parameter w_, u_, b_, p_;
};

std::unique_ptr<Cell> create(const CellSpec& spec) {
  return std::make_unique<PeepholeLstm>(spec);
}

}  // namespace
}  // namespace zoo

extern const rwd::plugins::Descriptor peephole_lstm_descriptor =
    rwd::plugins::model_descriptor("peephole_lstm", "LSTM with peepholes (Gers et al. 2002)", zoo::create);
REWIND_PLUGIN(peephole_lstm_descriptor)
