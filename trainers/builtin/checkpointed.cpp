// Checkpointed BPTT: the exact full-BPTT gradient with sub-linear memory. A forward pass without a tape
// history keeps the state every c steps; the backward pass recomputes one segment at a time, last first,
// seeding each segment's end state with the gradient the later segment sent back.
#include <algorithm>
#include <cmath>

#include "rewind/autodiff/ops.hpp"
#include "rewind/plugins/plugin.hpp"

namespace rwd::trainers::builtin {
namespace {

class Checkpointed final : public Trainer {
 public:
  explicit Checkpointed(const TrainerSpec& spec)
      : segment_(spec.options.integer("segment")), budget_(spec.options.integer("memory_budget")) {
    if (segment_ < 0 || budget_ < 0)
      throw std::invalid_argument("trainer 'checkpointed': segment and memory_budget must be >= 0");
  }

  UpdateStats next(Model& model, const Dataset& data, Tape& tape) override {
    const std::int64_t c = segment_length(model, data, tape);
    const std::int64_t total = count_targets(data, 0, steps_);
    std::vector<std::vector<Tensor>> starts{stored_};
    for (std::int64_t begin = 0; begin + c < steps_; begin += c) {  // the states at segment starts
      autodiff::NoGradGuard no_grad;
      tape.clear();
      ModelState state;
      model.begin(tape, starts.back(), state);
      starts.emplace_back();
      const std::int64_t end = begin + c;  // no loss: this pass only keeps the state at each segment's end
      record_window(
          model, tape, data, state,
          {.begin = begin, .end = end, .loss_begin = end, .save_step = end, .saved = &starts.back()});
    }
    for (autodiff::Parameter* p : model.parameters()) p->zero_grad();
    UpdateStats stats;
    stats.end_step = steps_;
    std::vector<Tensor> end_grad;  // d loss / d (state at the current segment's end)
    for (auto j = static_cast<std::int64_t>(starts.size()) - 1; j >= 0; --j) {
      const std::int64_t begin = j * c, end = std::min(begin + c, steps_);
      tape.clear();
      ModelState state;
      model.begin(tape, starts[static_cast<std::size_t>(j)], state, j > 0);
      const ModelState leaves = state;
      const WindowResult w = record_window(
          model, tape, data, state,
          {.begin = begin, .end = end, .loss_begin = begin, .normalizer = static_cast<double>(total)});
      std::vector<autodiff::Seed> seeds;
      if (w.loss.valid() && w.loss.requires_grad()) seeds.push_back({w.loss, nullptr});
      std::size_t k = 0;
      for (const models::State& layer : state)
        for (const Var& v : layer) {
          if (!end_grad.empty() && v.requires_grad()) seeds.push_back({v, &end_grad[k]});
          ++k;
        }
      if (!seeds.empty()) tape.backward(seeds);
      if (j > 0) {
        end_grad.clear();
        for (const models::State& layer : leaves)
          for (const Var& v : layer) end_grad.push_back(tape.grad(v));
      }
      stats.loss += w.loss.valid() ? w.loss.item() : 0.0;
      stats.loss_count += w.count;
      stats.correct += w.correct;
      // Every segment but the last runs twice: once without a tape for its end state, once recorded.
      stats.steps_recorded += (j + 1 == static_cast<std::int64_t>(starts.size()) ? 1 : 2) * (end - begin);
    }
    stats.tape = tape.memory();
    position_ = steps_;
    return stats;
  }

 private:
  // c from the option, from the memory budget (measured bytes of one recorded step), or ceil(sqrt(T)).
  std::int64_t segment_length(Model& model, const Dataset& data, Tape& tape) {
    if (segment_ > 0) return std::min(segment_, steps_);
    if (budget_ > 0) {
      tape.clear();
      ModelState state;
      model.begin(tape, stored_, state);
      const std::size_t before = tape.memory().in_use_bytes;
      const WindowResult w = record_window(model, tape, data, state, {.begin = 0, .end = 1});
      if (w.loss.valid() && w.loss.requires_grad()) tape.backward(w.loss);
      const std::size_t per_step = std::max<std::size_t>(1, tape.memory().in_use_bytes - before);
      tape.clear();
      tape.reset_peak();
      return std::clamp<std::int64_t>(budget_ / static_cast<std::int64_t>(per_step), 1, steps_);
    }
    return std::max<std::int64_t>(
        1, static_cast<std::int64_t>(std::ceil(std::sqrt(static_cast<double>(steps_)))));
  }

  std::int64_t segment_, budget_;
};

std::unique_ptr<Trainer> create(const TrainerSpec& spec) {
  return std::make_unique<Checkpointed>(spec);
}

constexpr models::OptionSpec options[] = {
    {"segment", models::OptionType::integer, "0", "steps between kept states (0: ceil(sqrt(T)))"},
    {"memory_budget", models::OptionType::integer, "0",
     "bytes of tape for one recomputed segment; sets the segment length when segment is 0"}};

}  // namespace

extern const plugins::Descriptor checkpointed_descriptor = plugins::trainer_descriptor(
    "checkpointed", "checkpointed BPTT: the full gradient, recomputing segments from kept states", options,
    create);

}  // namespace rwd::trainers::builtin

REWIND_PLUGIN(rwd::trainers::builtin::checkpointed_descriptor)
