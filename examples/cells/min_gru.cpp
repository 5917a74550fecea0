// minGRU (Feng, Tung, Ahmed, Bengio & Hajimirsadeghi 2024, "Were RNNs all we needed?"): gates that do not
// read the state, so a whole sequence could run as a parallel scan.
//   z  = sigmoid(W_z x + b_z)
//   h~ = W_h x + b_h
//   h' = (1 - z) * h + z * h~
#include "common.hpp"

namespace zoo {
namespace {

class MinGru final : public Cell {
 public:
  explicit MinGru(const CellSpec& s)
      : input_(s.input_size),
        hidden_(s.hidden_size),
        w_(param(s, "weight_ih", Shape::matrix(2 * hidden_, input_))),  // [W_z; W_h]
        b_(param(s, "bias_ih", Shape::vector(2 * hidden_))) {}

  std::int64_t input_size() const override { return input_; }
  std::int64_t hidden_size() const override { return hidden_; }
  std::vector<Parameter*> parameters() override { return {&w_, &b_}; }

  State step(Tape& t, const Var& x, const State& s) override {
    const Var gates = linear(t, x, w_) + t.param(b_);
    const Var z = sigmoid(slice_cols(gates, 0, hidden_));
    const Var candidate = slice_cols(gates, hidden_, 2 * hidden_);
    return {(1.0 - z) * s[0] + z * candidate};
  }

 private:
  std::int64_t input_, hidden_;
  Parameter w_, b_;
};

std::unique_ptr<Cell> create(const CellSpec& spec) {
  return std::make_unique<MinGru>(spec);
}

}  // namespace
}  // namespace zoo

extern const rwd::plugins::Descriptor min_gru_descriptor =
    rwd::plugins::model_descriptor("min_gru", "minGRU (Feng et al. 2024)", zoo::create);
REWIND_PLUGIN(min_gru_descriptor)
