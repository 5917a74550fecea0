// Adaptive truncated BPTT (Aicher, Foti & Fox 2019, "Adaptively truncating backpropagation through time to
// control gradient bias"): truncated BPTT(k1, k2) whose k2 is re-chosen every `every` updates so that every
// loss of an update is unrolled at least k steps, k the smallest unroll whose estimated relative gradient
// bias is at most `tolerance`, from the decay of ||dL_t / dh_{t-j}|| measured on the current parameters
// (estimate_horizon, docs/truncation.md). The last loss of an update is unrolled k2 steps, the first only
// k2 - k1 + 1, hence k2 = k + k1 - 1 (with k1 = k2, the classic loop, k2 = k). Each update is the truncated
// trainer's (Trainer::truncated_update); a new k2 takes effect from the update after the estimate and grows
// towards it by at most k1 per update, because the state a longer unroll starts from must have been stored
// on the way; it shrinks at once.
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "rewind/plugins/plugin.hpp"
#include "rewind/trainers/analysis.hpp"

namespace rwd::trainers::builtin {
namespace {

class Adaptive final : public Trainer {
 public:
  explicit Adaptive(const TrainerSpec& spec)
      : every_(spec.options.integer("every")),
        k_min_(spec.options.integer("k_min")),
        k_max_(spec.options.integer("k_max")),
        k1_fixed_(spec.options.integer("k1")),
        lags_(spec.options.integer("lags")),
        loss_steps_(spec.options.integer("loss_steps")),
        budget_(spec.options.integer("memory_budget")),
        tolerance_(spec.options.real("tolerance")),
        k1_fraction_(spec.options.real("k1_fraction")) {
    const auto refuse = [](const std::string& what) {
      throw std::invalid_argument("trainer 'adaptive': " + what);
    };
    if (!(tolerance_ > 0 && tolerance_ < 1)) refuse("tolerance must lie in (0, 1)");
    if (every_ < 1) refuse("every must be >= 1");
    if (k_min_ < 1 || k_max_ < k_min_) refuse("need 1 <= k_min <= k_max");
    if (k1_fixed_ < 0 || k1_fixed_ > k_min_)
      refuse("k1 must lie in [0, k_min] (0: k1_fraction of k2), got k1 = " + std::to_string(k1_fixed_) +
             " with k_min = " + std::to_string(k_min_) + " (raise k_min to at least k1)");
    if (!(k1_fraction_ > 0 && k1_fraction_ <= 1)) refuse("k1_fraction must lie in (0, 1]");
    if (lags_ < 0 || loss_steps_ < 1 || budget_ < 0) refuse("lags, memory_budget >= 0 and loss_steps >= 1");
    const std::int64_t start = spec.options.integer("k_start");
    k2_ = std::clamp<std::int64_t>(start > 0 ? start : k_min_, k_min_, k_max_);
    k1_ = k1_for(k2_);
    target_k2_ = k2_;
    since_estimate_ = every_;  // the first update estimates
  }

  UpdateStats next(Model& model, const Dataset& data, Tape& tape) override {
    if (since_estimate_ >= every_) {
      if (const std::int64_t wanted = estimate(model, data, tape); wanted > 0) {
        target_k2_ = wanted;
        since_estimate_ = 0;
      }
    }
    std::int64_t next_k2 = target_k2_;
    // Under a budget k2 grows only once an update has measured the bytes a step takes.
    if (budget_ > 0)
      next_k2 = bytes_per_step_ > 0
                    ? std::min(next_k2, std::max<std::int64_t>(k_min_, budget_ / bytes_per_step_))
                    : std::min(next_k2, k2_);
    // A longer unroll starts where no state was stored yet: grow by at most one update's k1 at a time
    // (k1_for grows with k2, so the next update's k1 is at least this one's).
    next_k2 = std::min(next_k2, k2_ + k1_for(k2_));
    const std::int64_t next_k1 = k1_for(next_k2);
    UpdateStats stats = truncated_update(model, data, tape, k1_, k2_, next_k1, next_k2);
    if (stats.steps_recorded > 0)
      bytes_per_step_ = std::max<std::int64_t>(
          bytes_per_step_, static_cast<std::int64_t>(stats.tape.peak_bytes) / stats.steps_recorded);
    since_estimate_ += stats.loss_count > 0;  // as the loop counts updates
    k1_ = next_k1, k2_ = next_k2;
    return stats;
  }

  std::map<std::string, std::string> settings() const override {
    return {{"adaptive.k2", std::to_string(k2_)},
            {"adaptive.target_k2", std::to_string(target_k2_)},
            {"adaptive.since_estimate", std::to_string(since_estimate_)},
            {"adaptive.bytes_per_step", std::to_string(bytes_per_step_)}};
  }
  void restore_settings(const std::map<std::string, std::string>& s) override {
    std::int64_t k2 = 0, target = 0, since = 0, bytes = 0;
    try {
      k2 = std::stoll(s.at("adaptive.k2"));
      target = std::stoll(s.at("adaptive.target_k2"));
      since = std::stoll(s.at("adaptive.since_estimate"));
      bytes = std::stoll(s.at("adaptive.bytes_per_step"));
    } catch (const std::exception&) {
      throw std::invalid_argument(
          "trainer 'adaptive': the saved k2 and estimate counter are missing or unreadable");
    }
    if (k2 < k_min_ || k2 > k_max_ || target < k_min_ || target > k_max_ || since < 0 || bytes < 0)
      throw std::invalid_argument("trainer 'adaptive': saved k2 = " + std::to_string(k2) +
                                  " is outside [k_min, k_max]");
    k2_ = k2, k1_ = k1_for(k2), target_k2_ = target, since_estimate_ = since, bytes_per_step_ = bytes;
  }

 private:
  std::int64_t k1_for(std::int64_t k2) const {
    if (k1_fixed_ > 0) return k1_fixed_;
    return std::clamp<std::int64_t>(std::llround(k1_fraction_ * static_cast<double>(k2)), 1, k2);
  }

  // The suggested k on the data ahead, from the stored state, clamped to [k_min, k_max]; 0 when the
  // stretch ahead has no target to measure (the estimate is retried at the next update).
  std::int64_t estimate(Model& model, const Dataset& data, Tape& tape) {
    const std::int64_t lags = lags_ > 0 ? lags_ : k_max_;
    const std::int64_t length = std::min(steps_ - stored_step_, 2 * lags);
    if (length < 2) return 0;
    const HorizonAnalysis h = estimate_horizon(model, SegmentView(data, stored_step_, length), stored_, lags,
                                               tolerance_, loss_steps_, tape);
    if (h.loss_steps == 0) return 0;
    return h.suggested_k > 0 ? k2_for(h.suggested_k) : k_max_;
  }

  // The smallest k2 in [k_min, k_max] whose update unrolls its first loss at least k steps (k_max if none);
  // k itself when k1 = k2, where the first loss always sees one step.
  std::int64_t k2_for(std::int64_t k) const {
    if (k1_fixed_ == 0 && k1_fraction_ == 1) return std::clamp(k, k_min_, k_max_);
    for (std::int64_t k2 = k_min_; k2 < k_max_; ++k2)
      if (k2 - k1_for(k2) + 1 >= k) return k2;
    return k_max_;
  }

  std::int64_t every_, k_min_, k_max_, k1_fixed_, lags_, loss_steps_, budget_;
  double tolerance_, k1_fraction_;
  // k2_: this update's; target_k2_: the last estimate's, which k2 approaches by at most k1 per update.
  std::int64_t k1_ = 0, k2_ = 0, target_k2_ = 0, since_estimate_ = 0, bytes_per_step_ = 0;
};

std::unique_ptr<Trainer> create(const TrainerSpec& spec) {
  return std::make_unique<Adaptive>(spec);
}

constexpr models::OptionSpec options[] = {
    {"tolerance", models::OptionType::real, "0.1", "relative gradient bias accepted, in (0, 1)"},
    {"every", models::OptionType::integer, "50", "updates between estimates of the decay"},
    {"k_min", models::OptionType::integer, "2", "smallest k2"},
    {"k_max", models::OptionType::integer, "100", "largest k2"},
    {"k_start", models::OptionType::integer, "0", "k2 before the first estimate takes effect (0: k_min)"},
    {"k1", models::OptionType::integer, "0", "fixed steps between updates, <= k_min (0: k1_fraction of k2)"},
    {"k1_fraction", models::OptionType::real, "1", "k1 = round(k1_fraction k2) when k1 is 0"},
    {"lags", models::OptionType::integer, "0", "lags measured per estimate (0: k_max)"},
    {"loss_steps", models::OptionType::integer, "4", "loss steps per estimate, one backward pass each"},
    {"memory_budget", models::OptionType::integer, "0",
     "tape bytes an update may use: caps k2 by the bytes per step measured so far (0: no cap)"}};

}  // namespace

extern const plugins::Descriptor adaptive_descriptor = plugins::trainer_descriptor(
    "adaptive", "adaptive TBPTT (Aicher et al. 2019): k2 re-chosen from the measured gradient decay", options,
    create);

}  // namespace rwd::trainers::builtin

REWIND_PLUGIN(rwd::trainers::builtin::adaptive_descriptor)
