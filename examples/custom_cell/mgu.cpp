// A minimal gated unit (Zhou et al. 2016), written only with rewind's public autodiff ops:
//   f  = sigmoid(W_f x + U_f h + b_f)
//   h~ = tanh(W_h x + U_h (f * h) + b_h)
//   h' = (1 - f) * h + f * h~
#include <cmath>

#include "rewind/autodiff/ops.hpp"
#include "rewind/plugins/plugin.hpp"

using namespace rwd::autodiff;
using rwd::models::Cell;
using rwd::models::CellSpec;
using rwd::models::State;

namespace {

class Mgu final : public Cell {
 public:
  explicit Mgu(const CellSpec& s)
      : input_(s.input_size),
        hidden_(s.hidden_size),
        w_(s.name("weight_ih"), init(s, Shape::matrix(2 * hidden_, input_))),  // [W_f; W_h]
        u_f_(s.name("weight_hf"), init(s, Shape::matrix(hidden_, hidden_))),
        u_h_(s.name("weight_hh"), init(s, Shape::matrix(hidden_, hidden_))),
        b_(s.name("bias"), init(s, Shape::vector(2 * hidden_))) {}

  std::int64_t input_size() const override { return input_; }
  std::int64_t hidden_size() const override { return hidden_; }
  std::vector<Parameter*> parameters() override { return {&w_, &u_f_, &u_h_, &b_}; }

  State step(Tape& t, const Var& x, const State& s) override {
    const Var& h = s[0];
    const Var wx = matmul(x, t.param(w_), Transpose::no, Transpose::yes) + t.param(b_);
    const Var f =
        sigmoid(slice_cols(wx, 0, hidden_) + matmul(h, t.param(u_f_), Transpose::no, Transpose::yes));
    const Var candidate = tanh(slice_cols(wx, hidden_, 2 * hidden_) +
                               matmul(f * h, t.param(u_h_), Transpose::no, Transpose::yes));
    return {h + f * (candidate - h)};
  }

 private:
  static Tensor init(const CellSpec& s, Shape shape) {
    return s.initializer->uniform(shape, s.dtype, 1.0 / std::sqrt(static_cast<double>(s.hidden_size)));
  }
  std::int64_t input_, hidden_;
  Parameter w_, u_f_, u_h_, b_;
};

std::unique_ptr<Cell> create(const CellSpec& spec) {
  return std::make_unique<Mgu>(spec);
}

}  // namespace

extern const rwd::plugins::Descriptor mgu_descriptor = rwd::plugins::model_descriptor(
    "mgu", "Minimal gated unit (Zhou et al. 2016), an example user cell", create);
REWIND_PLUGIN(mgu_descriptor)
