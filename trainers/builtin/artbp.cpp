// ARTBP, anticipated reweighted truncated backpropagation (Tallec & Ollivier 2017, "Unbiasing truncated
// backpropagation through time"). Before step t (0 < t < T) the pass is truncated with probability c_t; the
// steps between two truncations form one update, unrolled from the stored state at its first step. Inside
// an update the gradient that flows back through the state S_t, where the draw said "go on", is multiplied
// by 1 / (1 - c_t). A path from a loss back to an earlier step survives with the product of the (1 - c_t) on
// the way and is weighted by the inverse of that product, so the expected gradient of the pass (updates
// weighted by their share of the targets, as pass_gradient sums them) is the full BPTT gradient.
// Each update divides its loss sum by the count of targets an update holds on average, not by its own count:
// with its own, the targets of short updates (whose gradients reach less far back) would weigh more in the
// optimizer's steps, and SGD would settle off the full gradient's fixed point (tests/test_adaptive.cpp,
// influence balancing).
// Probability schedule: c_t = 0 during the first k_min steps of an update (no truncation), then c; c < 1.
// Draws are a hash of (seed, pass, t): runs repeat, and resume needs only the pass count (saved).
#include <cmath>
#include <stdexcept>

#include "rewind/autodiff/ops.hpp"
#include "rewind/plugins/plugin.hpp"

namespace rwd::trainers::builtin {
namespace {

// splitmix64's finaliser: a uniform 64-bit value per (seed, pass, step).
double uniform(std::uint64_t seed, std::uint64_t pass, std::uint64_t step) {
  std::uint64_t z = seed * 0x9e3779b97f4a7c15ULL + pass * 0xd1b54a32d192ed03ULL + step;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

// The same value, and a gradient multiplied by `factor` on its way back: sg(x) + factor (x - sg(x)).
Var scale_gradient(const Var& x, double factor) {
  const Var constant = autodiff::stop_gradient(x);
  return constant + autodiff::scale(x - constant, factor);
}

class Artbp final : public Trainer {
 public:
  explicit Artbp(const TrainerSpec& spec)
      : c_(spec.options.real("c")),
        k_min_(spec.options.integer("k_min")),
        seed_(static_cast<std::uint64_t>(spec.options.integer("seed"))) {
    if (!(c_ > 0 && c_ < 1))
      throw std::invalid_argument(
          "trainer 'artbp': c, the truncation probability per step, must lie in (0, 1)");
    if (k_min_ < 1) throw std::invalid_argument("trainer 'artbp': k_min must be >= 1");
  }

  void begin(Model& model, const Dataset& data, Tape& tape) override {
    Trainer::begin(model, data, tape);
    ++pass_;
    // Steps per update: k_min, then a geometric number of further draws until one truncates.
    const double mean_length = static_cast<double>(k_min_ - 1) + 1.0 / c_;
    mean_count_ = steps_ > 0 ? static_cast<double>(count_targets(data, 0, steps_)) /
                                   static_cast<double>(steps_) * mean_length
                             : 0.0;
  }

  UpdateStats next(Model& model, const Dataset& data, Tape& tape) override {
    const std::int64_t first = position_;
    // The draws decide where this update ends: the first t after k_min steps with u_t < c.
    std::int64_t end = first + 1;
    while (end < steps_ && !(end - first >= k_min_ && truncate_at(end))) ++end;
    for (autodiff::Parameter* p : model.parameters()) p->zero_grad();
    tape.clear();
    ModelState state;
    model.begin(tape, stored_, state);
    std::vector<Tensor> next_state;
    Var loss;
    UpdateStats stats;
    for (std::int64_t t = first; t < end; ++t) {
      if (t > first) {  // S_t, not truncated: compensate the gradient that flows back through it
        const double factor = 1.0 / (1.0 - probability(t - first));
        for (models::State& layer : state)
          for (Var& v : layer) v = scale_gradient(v, factor);
      }
      const WindowResult w = record_window(model, tape, data, state,
                                           {.begin = t,
                                            .end = t + 1,
                                            .loss_begin = first,
                                            .normalizer = mean_count_,
                                            .save_step = end,
                                            .saved = &next_state});
      if (w.loss.valid()) loss = loss.valid() ? loss + w.loss : w.loss;
      stats.loss_count += w.count;
      stats.correct += w.correct;
    }
    if (loss.valid() && loss.requires_grad()) tape.backward(loss);
    // Reported as every trainer reports it: the mean over the update's own targets.
    stats.loss = loss.valid() ? loss.item() * mean_count_ / static_cast<double>(stats.loss_count) : 0.0;
    stats.normalizer = mean_count_;
    stats.first_step = first;
    stats.end_step = end;
    stats.steps_recorded = end - first;
    stats.tape = tape.memory();
    stats.k1 = stats.k2 = end - first;
    stored_ = std::move(next_state);
    stored_step_ = end;
    position_ = end;
    return stats;
  }

  std::map<std::string, std::string> settings() const override {
    return {{"artbp.pass", std::to_string(pass_)}};
  }
  void restore_settings(const std::map<std::string, std::string>& s) override {
    try {
      pass_ = std::stoull(s.at("artbp.pass"));
    } catch (const std::exception&) {
      throw std::invalid_argument("trainer 'artbp': the saved pass count is missing or unreadable");
    }
  }

 private:
  // c_t for a state `length` steps into the update.
  double probability(std::int64_t length) const { return length < k_min_ ? 0.0 : c_; }
  bool truncate_at(std::int64_t t) const { return uniform(seed_, pass_, static_cast<std::uint64_t>(t)) < c_; }

  double c_;
  std::int64_t k_min_;
  std::uint64_t seed_;
  std::uint64_t pass_ = 0;  // passes begun, the first is 1
  double mean_count_ = 0;   // counted targets per update, on average over the pass's draws
};

std::unique_ptr<Trainer> create(const TrainerSpec& spec) {
  return std::make_unique<Artbp>(spec);
}

constexpr models::OptionSpec options[] = {
    {"c", models::OptionType::real, "0.05", "probability of a truncation before a step, in (0, 1)"},
    {"k_min", models::OptionType::integer, "1", "steps of an update before a truncation may be drawn"},
    {"seed", models::OptionType::integer, "1", "seed of the truncation draws"}};

}  // namespace

extern const plugins::Descriptor artbp_descriptor = plugins::trainer_descriptor(
    "artbp", "ARTBP (Tallec & Ollivier 2017): random truncations with compensation, unbiased in expectation",
    options, create);

}  // namespace rwd::trainers::builtin

REWIND_PLUGIN(rwd::trainers::builtin::artbp_descriptor)
