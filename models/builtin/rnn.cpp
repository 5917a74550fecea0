// Elman RNN with tanh, as torch.nn.RNN: h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh).
#include "gated_cell.hpp"
#include "rewind/plugins/plugin.hpp"

namespace rwd::models::builtin {
namespace {

class Rnn final : public GatedCell {
 public:
  explicit Rnn(const CellSpec& spec) : GatedCell(spec, 1) {}

  Sequence run(Tape& t, const Var& x, const State& s, std::span<const std::uint8_t> resets) override {
    return run_window(t, x, s, resets, autodiff::rnn_sequence);
  }

  State step(Tape& t, const Var& x, const State& s) override {
    if (fused_) return {autodiff::rnn_pointwise(input_gates(t, x), hidden_gates(t, s[0]))};
    return {autodiff::tanh(input_gates(t, x) + hidden_gates(t, s[0]))};
  }

  const Tensor* infer(const Tensor& x, std::span<Tensor> s) override {
    if (!fused_) return nullptr;
    project(x, s[0]);
    autodiff::infer::rnn_pointwise(gi_, gh_, s[0]);
    return &s[0];
  }
};

std::unique_ptr<Cell> create(const CellSpec& spec) {
  return std::make_unique<Rnn>(spec);
}

constexpr OptionSpec options[] = {fused_option};

}  // namespace

extern const plugins::Descriptor rnn_descriptor =
    plugins::model_descriptor("rnn", "Elman RNN with tanh (torch.nn.RNN)", options, create);

}  // namespace rwd::models::builtin

REWIND_PLUGIN(rwd::models::builtin::rnn_descriptor)
