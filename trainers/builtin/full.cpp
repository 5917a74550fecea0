// Full BPTT: one forward over the whole sequence, one backward, one update. The exact gradient.
#include "rewind/autodiff/ops.hpp"
#include "rewind/plugins/plugin.hpp"

namespace rwd::trainers::builtin {
namespace {

class Full final : public Trainer {
 public:
  UpdateStats next(Model& model, const Dataset& data, Tape& tape) override {
    for (autodiff::Parameter* p : model.parameters()) p->zero_grad();
    tape.clear();
    ModelState state;
    model.begin(tape, stored_, state);
    const WindowResult w = record_window(model, tape, data, state, {.begin = 0, .end = steps_});
    if (w.loss.valid() && w.loss.requires_grad()) tape.backward(w.loss);
    const UpdateStats stats{.loss = w.loss.valid() ? w.loss.item() : 0.0,
                            .loss_count = w.count,
                            .correct = w.correct,
                            .end_step = steps_,
                            .steps_recorded = steps_,
                            .tape = tape.memory()};
    position_ = steps_;
    return stats;
  }
};

std::unique_ptr<Trainer> create(const TrainerSpec&) {
  return std::make_unique<Full>();
}

}  // namespace

extern const plugins::Descriptor full_descriptor = plugins::trainer_descriptor(
    "full", "full BPTT: one forward and one backward over the whole sequence per update", create);

}  // namespace rwd::trainers::builtin

REWIND_PLUGIN(rwd::trainers::builtin::full_descriptor)
