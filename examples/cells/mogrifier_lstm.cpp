// Mogrifier LSTM (Melis, Kočiský & Blunsom 2020): before the LSTM step, x and h gate each other in turns,
// for r rounds (default 5; odd rounds update x from h, even rounds h from x):
//   x <- 2 sigmoid(Q_i h) * x   (i odd),   h <- 2 sigmoid(R_i x) * h   (i even)
// then PyTorch's LSTM step on the mogrified x and h. Option rounds=R.
#include "common.hpp"

namespace zoo {
namespace {

class MogrifierLstm final : public Cell {
 public:
  explicit MogrifierLstm(const CellSpec& s)
      : input_(s.input_size),
        hidden_(s.hidden_size),
        w_(param(s, "weight_ih", Shape::matrix(4 * hidden_, input_))),
        u_(param(s, "weight_hh", Shape::matrix(4 * hidden_, hidden_))),
        b_(param(s, "bias", Shape::vector(4 * hidden_))) {
    const std::int64_t rounds = s.options.integer("rounds");
    if (rounds < 0) throw std::invalid_argument("mogrifier_lstm: rounds must be >= 0");
    for (std::int64_t i = 1; i <= rounds; ++i)  // Q_i [input, hidden] for odd i, R_i [hidden, input] for even
      mogrify_.push_back(i % 2 == 1
                             ? param(s, "weight_q" + std::to_string(i), Shape::matrix(input_, hidden_))
                             : param(s, "weight_r" + std::to_string(i), Shape::matrix(hidden_, input_)));
  }

  std::int64_t input_size() const override { return input_; }
  std::int64_t hidden_size() const override { return hidden_; }
  int state_size() const override { return 2; }
  std::vector<Parameter*> parameters() override {
    std::vector<Parameter*> out{&w_, &u_, &b_};
    for (Parameter& m : mogrify_) out.push_back(&m);
    return out;
  }

  State step(Tape& t, const Var& x_in, const State& s) override {
    Var x = x_in, h = s[0];
    for (std::size_t i = 0; i < mogrify_.size(); ++i) {
      if (i % 2 == 0) {
        x = 2.0 * sigmoid(linear(t, h, mogrify_[i])) * x;
      } else {
        h = 2.0 * sigmoid(linear(t, x, mogrify_[i])) * h;
      }
    }
    const Var gates = linear(t, x, w_) + linear(t, h, u_) + t.param(b_);
    auto gate = [&](int k) { return slice_cols(gates, k * hidden_, (k + 1) * hidden_); };
    const Var c = sigmoid(gate(1)) * s[1] + sigmoid(gate(0)) * tanh(gate(2));
    return {sigmoid(gate(3)) * tanh(c), c};
  }

 private:
  std::int64_t input_, hidden_;
  Parameter w_, u_, b_;
  std::vector<Parameter> mogrify_;
};

std::unique_ptr<Cell> create(const CellSpec& spec) {
  return std::make_unique<MogrifierLstm>(spec);
}

constexpr rwd::models::OptionSpec options[] = {
    {"rounds", rwd::models::OptionType::integer, "5", "mogrification rounds before each step"}};

}  // namespace
}  // namespace zoo

extern const rwd::plugins::Descriptor mogrifier_lstm_descriptor = rwd::plugins::model_descriptor(
    "mogrifier_lstm", "Mogrifier LSTM (Melis, Kocisky & Blunsom 2020)", zoo::options, zoo::create);
REWIND_PLUGIN(mogrifier_lstm_descriptor)
