// SRU, the simple recurrent unit (Lei, Zhang, Wang, Dai & Artzi 2018, "Simple recurrent units for highly
// parallelizable recurrence"): the matrix products read only x; the recurrence is elementwise, with vectors
// v.
//   [x~ f r] = W x + [0 b_f b_r]  (three blocks of H)
//   f = sigmoid(f + v_f * c),  c' = f * c + (1 - f) * x~
//   r = sigmoid(r + v_r * c),  h' = r * c' + (1 - r) * P x   (P x = x when input and hidden sizes match)
#include "common.hpp"

namespace zoo {
namespace {

class Sru final : public Cell {
 public:
  explicit Sru(const CellSpec& s)
      : input_(s.input_size),
        hidden_(s.hidden_size),
        w_(param(s, "weight_ih", Shape::matrix(3 * hidden_, input_))),
        v_(param(s, "weight_c", Shape::vector(2 * hidden_))),  // [v_f; v_r]
        b_(param(s, "bias", Shape::vector(2 * hidden_))),      // [b_f; b_r]
        skip_(param(s, "weight_skip", Shape::matrix(hidden_, input_))) {}

  std::int64_t input_size() const override { return input_; }
  std::int64_t hidden_size() const override { return hidden_; }
  int state_size() const override { return 2; }
  std::vector<Parameter*> parameters() override {
    if (input_ == hidden_) return {&w_, &v_, &b_};
    return {&w_, &v_, &b_, &skip_};
  }

  State step(Tape& t, const Var& x, const State& s) override {
    const Var& c = s[1];
    const Var wx = linear(t, x, w_);
    auto block = [&](const Var& v, int k) { return slice_cols(v, k * hidden_, (k + 1) * hidden_); };
    const Var v = t.param(v_), b = t.param(b_);
    const Var f = sigmoid(block(wx, 1) + block(b, 0) + block(v, 0) * c);
    const Var c_next = f * c + (1.0 - f) * block(wx, 0);
    const Var r = sigmoid(block(wx, 2) + block(b, 1) + block(v, 1) * c);
    const Var highway = input_ == hidden_ ? x : linear(t, x, skip_);
    return {r * c_next + (1.0 - r) * highway, c_next};
  }

 private:
  std::int64_t input_, hidden_;
  Parameter w_, v_, b_, skip_;
};

std::unique_ptr<Cell> create(const CellSpec& spec) {
  return std::make_unique<Sru>(spec);
}

}  // namespace
}  // namespace zoo

extern const rwd::plugins::Descriptor sru_descriptor =
    rwd::plugins::model_descriptor("sru", "SRU, simple recurrent unit (Lei et al. 2018)", zoo::create);
REWIND_PLUGIN(sru_descriptor)
