// LSTM as torch.nn.LSTM, gates in PyTorch's order i, f, g, o:
//   i = sigmoid(.), f = sigmoid(.), g = tanh(.), o = sigmoid(.)   of x W_ih^T + b_ih + h W_hh^T + b_hh
//   c' = f * c + i * g    h' = o * tanh(c')
#include "gated_cell.hpp"
#include "rewind/plugins/plugin.hpp"

namespace rwd::models::builtin {
namespace {

class Lstm final : public GatedCell {
 public:
  explicit Lstm(const CellSpec& spec) : GatedCell(spec, 4) {
    // forget_bias sets the forget gate's total bias b_if + b_hf (Gers et al. 2000; Jozefowicz et al. 2015).
    if (const double forget_bias = spec.options.real("forget_bias"); forget_bias != 0) {
      for (std::int64_t j = hidden_; j < 2 * hidden_; ++j) {
        bias_ih_.value().set(j, forget_bias);
        bias_hh_.value().set(j, 0.0);
      }
    }
  }

  int state_size() const override { return 2; }

  Sequence run(Tape& t, const Var& x, const State& s, std::span<const std::uint8_t> resets) override {
    return run_window(t, x, s, resets, autodiff::lstm_sequence);
  }

  State step(Tape& t, const Var& x, const State& s) override {
    if (fused_) {
      const Var hc = autodiff::lstm_pointwise(input_gates(t, x), hidden_gates(t, s[0]), s[1]);
      return {autodiff::slice_cols(hc, 0, hidden_), autodiff::slice_cols(hc, hidden_, 2 * hidden_)};
    }
    const Var gates = input_gates(t, x) + hidden_gates(t, s[0]);
    const Var i = autodiff::sigmoid(gate(gates, 0)), f = autodiff::sigmoid(gate(gates, 1));
    const Var g = autodiff::tanh(gate(gates, 2)), o = autodiff::sigmoid(gate(gates, 3));
    const Var c = f * s[1] + i * g;
    return {o * autodiff::tanh(c), c};
  }

  const Tensor* infer(const Tensor& x, std::span<Tensor> s) override {
    if (!fused_) return nullptr;
    project(x, s[0]);
    previous_ = s[1];
    autodiff::infer::lstm_pointwise(gi_, gh_, previous_, s[0], s[1]);
    return &s[0];
  }
};

std::unique_ptr<Cell> create(const CellSpec& spec) {
  return std::make_unique<Lstm>(spec);
}

constexpr OptionSpec options[] = {
    fused_option,
    {"forget_bias", OptionType::real, "0",
     "initial forget-gate bias (b_if + b_hf); 0 keeps PyTorch's uniform initialisation"}};

}  // namespace

extern const plugins::Descriptor lstm_descriptor =
    plugins::model_descriptor("lstm", "Long short-term memory (torch.nn.LSTM)", options, create);

}  // namespace rwd::models::builtin

REWIND_PLUGIN(rwd::models::builtin::lstm_descriptor)
