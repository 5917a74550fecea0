// Truncated BPTT(k1, k2): every k1 steps, one update whose gradient is the exact gradient of the loss over
// the last k1 steps of a k2-step unroll that starts from the stored state k2 steps back, held constant.
// docs/trainers.md has the definition and the bookkeeping.
#include <algorithm>
#include <stdexcept>

#include "rewind/autodiff/ops.hpp"
#include "rewind/plugins/plugin.hpp"

namespace rwd::trainers::builtin {
namespace {

class Truncated final : public Trainer {
 public:
  explicit Truncated(const TrainerSpec& spec) {
    const std::int64_t k = spec.options.integer("k");
    k1_ = spec.options.integer("k1") > 0 ? spec.options.integer("k1") : k;
    k2_ = spec.options.integer("k2") > 0 ? spec.options.integer("k2") : k1_;
    if (k1_ < 1 || k2_ < k1_)
      throw std::invalid_argument("trainer 'truncated': need 1 <= k1 <= k2, got k1 = " + std::to_string(k1_) +
                                  ", k2 = " + std::to_string(k2_));
  }

  UpdateStats next(Model& model, const Dataset& data, Tape& tape) override {
    return truncated_update(model, data, tape, k1_, k2_, k1_, k2_);
  }

 private:
  std::int64_t k1_ = 0, k2_ = 0;
};

std::unique_ptr<Trainer> create(const TrainerSpec& spec) {
  return std::make_unique<Truncated>(spec);
}

constexpr models::OptionSpec options[] = {
    {"k", models::OptionType::integer, "20", "window: sets k1 = k2 = k (the classic TBPTT(k))"},
    {"k1", models::OptionType::integer, "0", "steps between updates, each update's loss covers them (0: k)"},
    {"k2", models::OptionType::integer, "0", "steps each update backpropagates through, k2 >= k1 (0: k1)"}};

}  // namespace

extern const plugins::Descriptor truncated_descriptor = plugins::trainer_descriptor(
    "truncated", "truncated BPTT(k1, k2): an update every k1 steps through a k2-step unroll", options,
    create);

}  // namespace rwd::trainers::builtin

REWIND_PLUGIN(rwd::trainers::builtin::truncated_descriptor)
