// IndRNN (Li, Li, Cook, Zhu & Gao 2018): each unit reads only its own previous value, through a vector u.
//   h' = relu(W x + b + u * h)
#include "common.hpp"

namespace zoo {
namespace {

class IndRnn final : public Cell {
 public:
  explicit IndRnn(const CellSpec& s)
      : input_(s.input_size),
        hidden_(s.hidden_size),
        w_(param(s, "weight_ih", Shape::matrix(hidden_, input_))),
        u_(param(s, "weight_hh", Shape::vector(hidden_))),
        b_(param(s, "bias_ih", Shape::vector(hidden_))) {}

  std::int64_t input_size() const override { return input_; }
  std::int64_t hidden_size() const override { return hidden_; }
  std::vector<Parameter*> parameters() override { return {&w_, &u_, &b_}; }

  State step(Tape& t, const Var& x, const State& s) override {
    return {relu(linear(t, x, w_) + t.param(b_) + t.param(u_) * s[0])};
  }

 private:
  std::int64_t input_, hidden_;
  Parameter w_, u_, b_;
};

std::unique_ptr<Cell> create(const CellSpec& spec) {
  return std::make_unique<IndRnn>(spec);
}

}  // namespace
}  // namespace zoo

extern const rwd::plugins::Descriptor ind_rnn_descriptor =
    rwd::plugins::model_descriptor("ind_rnn", "IndRNN (Li et al. 2018)", zoo::create);
REWIND_PLUGIN(ind_rnn_descriptor)
