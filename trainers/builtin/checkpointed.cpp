// Checkpointed BPTT: the exact full-BPTT gradient with less memory. It runs a checkpoint plan
// (rewind/trainers/schedule.hpp): advances without a tape keep states, reversals record a stretch of steps
// from a kept state and backpropagate it, seeded with the gradient the later stretch sent back to its end.
// With `segment` (or neither option) the plan keeps a state every c steps; with `memory_budget` it is the
// plan with the fewest recomputed steps that fits the budget, from the bytes measured on the first update.
#include <algorithm>
#include <cmath>
#include <map>
#include <optional>

#include "rewind/autodiff/ops.hpp"
#include "rewind/plugins/plugin.hpp"
#include "rewind/trainers/schedule.hpp"

namespace rwd::trainers::builtin {
namespace {

class Checkpointed final : public Trainer {
 public:
  explicit Checkpointed(const TrainerSpec& spec)
      : segment_(spec.options.integer("segment")), budget_(spec.options.string("memory_budget")) {
    if (segment_ < 0) throw std::invalid_argument("trainer 'checkpointed': segment must be >= 0");
    has_budget_ = budget_ != "0";  // the default: none
    try {
      if (has_budget_ && parse_budget(budget_, std::int64_t{1} << 50) <= 0)
        throw std::invalid_argument("'" + budget_ + "' is no memory at all");
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(std::string("trainer 'checkpointed': memory_budget ") + e.what());
    }
    if (segment_ > 0 && has_budget_)
      throw std::invalid_argument("trainer 'checkpointed': give segment or memory_budget, not both");
  }

  void begin(Model& model, const Dataset& data, Tape& tape) override {
    Trainer::begin(model, data, tape);
    tape_peak_ = 0;
  }

  UpdateStats next(Model& model, const Dataset& data, Tape& tape) override {
    const CheckpointPlan& plan = plan_for(model, data, tape);
    for (autodiff::Parameter* p : model.parameters()) p->zero_grad();
    const double total = static_cast<double>(count_targets(data, 0, steps_));
    std::map<std::int64_t, std::vector<Tensor>> kept;
    std::int64_t kept_bytes = 0;
    auto bytes = [](const std::vector<Tensor>& state) {
      std::int64_t sum = 0;
      for (const Tensor& t : state) sum += static_cast<std::int64_t>(t.bytes());
      return sum;
    };
    auto state_at = [&](std::int64_t step) -> const std::vector<Tensor>& {
      return step == 0 ? stored_ : kept.at(step);
    };
    UpdateStats stats;
    stats.end_step = steps_;
    std::vector<Tensor> end_grad;  // d loss / d (the state where the gradient has reached)
    for (const CheckpointAction& a : plan.actions) {
      if (a.kind == CheckpointAction::Kind::drop) {
        kept_bytes -= bytes(kept.at(a.from));
        kept.erase(a.from);
      } else if (a.kind == CheckpointAction::Kind::advance) {
        std::vector<Tensor> state = state_at(a.from);
        for (std::int64_t begin = a.from; begin < a.to; begin += a.chunk) {
          autodiff::NoGradGuard no_grad;
          clear(tape);
          ModelState recorded;
          model.begin(tape, state, recorded);
          const std::int64_t end = std::min(begin + a.chunk, a.to);  // no loss: only the end state is kept
          record_window(model, tape, data, recorded,
                        {.begin = begin, .end = end, .loss_begin = end, .save_step = end, .saved = &state});
          held(stats, kept_bytes + bytes(state) + bytes(end_grad), tape);  // the new state, the chunk's tape
        }
        kept_bytes += bytes(state);
        kept[a.to] = std::move(state);
      } else {
        const std::int64_t carried = bytes(end_grad);
        reverse(model, data, tape, state_at(a.from), a, total, end_grad, stats);
        held(stats, kept_bytes + carried, tape);
      }
    }
    stats.steps_recorded = plan.forward_steps;
    stats.tape = tape.memory();
    stats.tape.peak_bytes = tape_peak_;
    position_ = steps_;
    return stats;
  }

 private:
  // Records steps [from, to) from their kept start state and backpropagates their loss together with the
  // gradient at S_to; leaves the gradient at S_from in end_grad.
  void reverse(Model& model, const Dataset& data, Tape& tape, const std::vector<Tensor>& start,
               const CheckpointAction& a, double total, std::vector<Tensor>& end_grad, UpdateStats& stats) {
    clear(tape);
    ModelState state;
    model.begin(tape, start, state, a.from > 0);
    const ModelState leaves = state;
    const WindowResult w = record_window(
        model, tape, data, state, {.begin = a.from, .end = a.to, .loss_begin = a.from, .normalizer = total});
    std::vector<autodiff::Seed> seeds;
    if (w.loss.valid() && w.loss.requires_grad()) seeds.push_back({w.loss, nullptr});
    std::size_t k = 0;
    for (const models::State& layer : state)
      for (const Var& v : layer) {
        if (!end_grad.empty() && v.requires_grad()) seeds.push_back({v, &end_grad[k]});
        ++k;
      }
    if (!seeds.empty()) tape.backward(seeds);
    end_grad.clear();
    if (a.from > 0)
      for (const models::State& layer : leaves)
        for (const Var& v : layer) end_grad.push_back(tape.grad(v));
    stats.loss += w.loss.valid() ? w.loss.item() : 0.0;
    stats.loss_count += w.count;
    stats.correct += w.correct;
  }

  // The plan for this pass's length: states every `segment` (default ceil(sqrt(T))) steps, or the optimum
  // within the budget, planned from the bytes measured here, once per length.
  const CheckpointPlan& plan_for(Model& model, const Dataset& data, Tape& tape) {
    if (plan_ && plan_->steps == steps_) return *plan_;
    if (has_budget_) {
      if (draws_random_numbers(model, data, tape))
        throw std::invalid_argument(
            "trainer 'checkpointed': memory_budget plans do not support a model that draws random numbers "
            "(dropout, zoneout) yet: its masks are drawn per window, and a plan's reversals are other "
            "windows "
            "than the advances that kept their start states; use segment");
      const CheckpointCosts costs = measure_checkpoint_costs(model, data, tape, stored_);
      try {
        plan_ = optimal_checkpoints(steps_, costs, parse_budget(budget_, full_tape_bytes(steps_, costs)));
      } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(std::string("trainer 'checkpointed': ") + e.what());
      }
    } else {
      const std::int64_t c =
          segment_ > 0 ? segment_
                       : static_cast<std::int64_t>(std::ceil(std::sqrt(static_cast<double>(steps_))));
      plan_ = uniform_checkpoints(steps_, c, CheckpointCosts{});
    }
    return *plan_;
  }

  // Whether two recordings of the same steps under other random keys end in other states: dropout, or a
  // plugin cell's zoneout, whose masks are drawn per window (autodiff::RandomKey).
  bool draws_random_numbers(Model& model, const Dataset& data, Tape& tape) const {
    const autodiff::RandomKey key = tape.random_key();
    std::vector<Tensor> ends[2];
    for (int i = 0; i < 2; ++i) {
      autodiff::NoGradGuard no_grad;
      tape.clear();
      tape.random_key().update = key.update + 1 + static_cast<std::uint64_t>(i);
      ModelState state;
      model.begin(tape, stored_, state);
      const std::int64_t end = std::min<std::int64_t>(2, steps_);
      record_window(model, tape, data, state,
                    {.begin = 0, .end = end, .loss_begin = end, .save_step = end, .saved = &ends[i]});
    }
    tape.clear();
    tape.random_key() = key;
    for (std::size_t t = 0; t < ends[0].size(); ++t)
      for (std::int64_t k = 0; k < ends[0][t].numel(); ++k)
        if (ends[0][t].get(k) != ends[1][t].get(k)) return true;
    return false;
  }

  // Each window's tape peak is read on its own, so that it adds up with the states kept at that time.
  void clear(Tape& tape) {
    tape_peak_ = std::max(tape_peak_, tape.memory().peak_bytes);
    tape.clear();
    tape.reset_peak();
  }
  void held(UpdateStats& stats, std::int64_t kept_bytes, const Tape& tape) {
    tape_peak_ = std::max(tape_peak_, tape.memory().peak_bytes);
    stats.held_bytes =
        std::max(stats.held_bytes, kept_bytes + static_cast<std::int64_t>(tape.memory().peak_bytes));
  }

  std::int64_t segment_;
  std::string budget_;  // bytes, or a percentage of full BPTT's tape
  bool has_budget_ = false;
  std::size_t tape_peak_ = 0;  // since begin()
  std::optional<CheckpointPlan> plan_;
};

std::unique_ptr<Trainer> create(const TrainerSpec& spec) {
  return std::make_unique<Checkpointed>(spec);
}

constexpr models::OptionSpec options[] = {
    {"segment", models::OptionType::integer, "0", "steps between kept states (0: ceil(sqrt(T)))"},
    {"memory_budget", models::OptionType::string, "0",
     "bytes (e.g. 50MiB, or 5% of full BPTT's tape) for kept states and tape: plans the fewest recomputed "
     "steps that fit"}};

}  // namespace

extern const plugins::Descriptor checkpointed_descriptor = plugins::trainer_descriptor(
    "checkpointed", "checkpointed BPTT: the full gradient, recomputing from kept states", options, create);

}  // namespace rwd::trainers::builtin

REWIND_PLUGIN(rwd::trainers::builtin::checkpointed_descriptor)
