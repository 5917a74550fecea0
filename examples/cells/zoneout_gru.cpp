// A GRU with zoneout (Krueger et al. 2017): in training each unit keeps its previous value with probability
// p instead of updating; in evaluation it takes the expectation. PyTorch's GRU equations otherwise:
//   r = sigmoid(W_r x + U_r h + b_r),  z = sigmoid(W_z x + U_z h + b_z)
//   n = tanh(W_n x + b_in + r * (U_n h + b_hn)),  u = (1 - z) * n + z * h
//   training: h' = where(keep, h, u), keep ~ Bernoulli(p) per unit;  evaluation: h' = p h + (1 - p) u
// Option zoneout=P (default 0.1). The mask is dropout's, so it is reproducible and exact on resume.
#include "common.hpp"

namespace zoo {
namespace {

class ZoneoutGru final : public Cell {
 public:
  explicit ZoneoutGru(const CellSpec& s)
      : input_(s.input_size),
        hidden_(s.hidden_size),
        p_(s.options.real("zoneout")),
        w_(param(s, "weight_ih", Shape::matrix(3 * hidden_, input_))),
        u_(param(s, "weight_hh", Shape::matrix(3 * hidden_, hidden_))),
        b_ih_(param(s, "bias_ih", Shape::vector(3 * hidden_))),
        b_hh_(param(s, "bias_hh", Shape::vector(3 * hidden_))) {
    if (!(p_ >= 0 && p_ < 1)) throw std::invalid_argument("zoneout_gru: zoneout must be in [0, 1)");
  }

  std::int64_t input_size() const override { return input_; }
  std::int64_t hidden_size() const override { return hidden_; }
  std::vector<Parameter*> parameters() override { return {&w_, &u_, &b_ih_, &b_hh_}; }

  State step(Tape& t, const Var& x, const State& s) override {
    const Var& h = s[0];
    const Var gi = linear(t, x, w_) + t.param(b_ih_);
    const Var gh = linear(t, h, u_) + t.param(b_hh_);
    auto part = [&](const Var& g, int k) { return slice_cols(g, k * hidden_, (k + 1) * hidden_); };
    const Var r = sigmoid(part(gi, 0) + part(gh, 0));
    const Var z = sigmoid(part(gi, 1) + part(gh, 1));
    const Var n = tanh(part(gi, 2) + r * part(gh, 2));
    const Var update = (1.0 - z) * n + z * h;
    if (!training()) return {p_ * h + (1.0 - p_) * update};
    // A constant [B, H] of ones (no gradient flows through stop_gradient); its dropout is 0 with probability
    // p, and there the unit zones out and keeps h.
    const Var moves = dropout(stop_gradient(h) * 0.0 + 1.0, p_);
    return {where(moves, update, h)};
  }

 private:
  std::int64_t input_, hidden_;
  double p_;
  Parameter w_, u_, b_ih_, b_hh_;
};

std::unique_ptr<Cell> create(const CellSpec& spec) {
  return std::make_unique<ZoneoutGru>(spec);
}

constexpr rwd::models::OptionSpec options[] = {
    {"zoneout", rwd::models::OptionType::real, "0.1", "probability that a unit keeps its previous value"}};

}  // namespace
}  // namespace zoo

extern const rwd::plugins::Descriptor zoneout_gru_descriptor = rwd::plugins::model_descriptor(
    "zoneout_gru", "GRU with zoneout (Krueger et al. 2017)", zoo::options, zoo::create);
REWIND_PLUGIN(zoneout_gru_descriptor)
