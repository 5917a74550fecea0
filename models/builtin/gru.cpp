// GRU as torch.nn.GRU, gates r, z, n:
//   r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)      z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
//   n = tanh(W_in x + b_in + r * (W_hn h + b_hn))   h' = (1 - z) * n + z * h
#include "gated_cell.hpp"
#include "rewind/plugins/plugin.hpp"

namespace rwd::models::builtin {
namespace {

class Gru final : public GatedCell {
 public:
  explicit Gru(const CellSpec& spec) : GatedCell(spec, 3) {}

  Sequence run(Tape& t, const Var& x, const State& s, std::span<const std::uint8_t> resets) override {
    return run_window(t, x, s, resets, autodiff::gru_sequence);
  }

  State step(Tape& t, const Var& x, const State& s) override {
    const Var gi = input_gates(t, x), gh = hidden_gates(t, s[0]);
    if (fused_) return {autodiff::gru_pointwise(gi, gh, s[0])};
    const Var r = autodiff::sigmoid(gate(gi, 0) + gate(gh, 0));
    const Var z = autodiff::sigmoid(gate(gi, 1) + gate(gh, 1));
    const Var n = autodiff::tanh(gate(gi, 2) + r * gate(gh, 2));
    return {n + z * (s[0] - n)};  // (1 - z) n + z h, without a tensor of ones
  }

  const Tensor* infer(const Tensor& x, std::span<Tensor> s) override {
    if (!fused_) return nullptr;
    project(x, s[0]);
    previous_ = s[0];
    autodiff::infer::gru_pointwise(gi_, gh_, previous_, s[0]);
    return &s[0];
  }
};

std::unique_ptr<Cell> create(const CellSpec& spec) {
  return std::make_unique<Gru>(spec);
}

constexpr OptionSpec options[] = {fused_option};

}  // namespace

extern const plugins::Descriptor gru_descriptor =
    plugins::model_descriptor("gru", "Gated recurrent unit (torch.nn.GRU)", options, create);

}  // namespace rwd::models::builtin

REWIND_PLUGIN(rwd::models::builtin::gru_descriptor)
