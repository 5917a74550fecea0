// What truncation costs in gradient, measured on a model and its data at fixed parameters: the gradient a
// truncated trainer accumulates over a segment against the full one (analyze_truncation), and how far back
// the gradient of a loss reaches the carried state (analyze_horizon). docs/truncation.md has the definitions.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "rewind/trainers/export.hpp"
#include "rewind/trainers/trainer.hpp"

namespace rwd::trainers {

// Steps [offset, offset + steps) of another dataset, as a dataset of its own (it must outlive the view).
class REWIND_TRAINERS_EXPORT SegmentView : public Dataset {
 public:
  SegmentView(const Dataset& base, std::int64_t offset, std::int64_t steps);
  std::int64_t batch() const override { return base_.batch(); }
  std::int64_t steps() const override { return steps_; }
  Step step(std::int64_t t) const override { return base_.step(offset_ + t); }
  std::int64_t vocab_size() const override { return base_.vocab_size(); }
  std::int64_t input_size() const override { return base_.input_size(); }
  std::int64_t output_size() const override { return base_.output_size(); }

 private:
  const Dataset& base_;
  std::int64_t offset_, steps_;
};

// The gradient `trainer` accumulates over one pass of `data` from `start` (the state before step 0), at the
// model's current parameters, with no optimizer step: the sum over its updates of each update's gradient
// weighted by its share of the pass's counted targets. Each update's loss is the mean over its own targets,
// so this is the gradient of the mean over the whole pass, and full BPTT's gradient for the full trainer.
// One tensor per parameter, in Model::parameters() order. Peak tape bytes and forward steps go to *stats.
struct PassGradientStats {
  std::size_t tape_peak_bytes = 0;
  std::int64_t updates = 0, steps_recorded = 0;
};
REWIND_TRAINERS_EXPORT std::vector<Tensor> pass_gradient(Model& model, Trainer& trainer, const Dataset& data,
                                                         const std::vector<Tensor>& start, Tape& tape,
                                                         PassGradientStats* stats = nullptr);

// The state after steps [0, data.steps()) from `start`, without recording a history.
REWIND_TRAINERS_EXPORT std::vector<Tensor> forward_state(Model& model, const Dataset& data,
                                                         const std::vector<Tensor>& start, Tape& tape);

// g_k against g: cosine, ||g_k - g|| / ||g|| and ||g_k|| / ||g||. Both zero counts as equal (1, 0, 1).
struct GradientComparison {
  double cosine = 0, relative_error = 0, norm_ratio = 0;
};
REWIND_TRAINERS_EXPORT GradientComparison compare_gradients(const std::vector<const Tensor*>& approx,
                                                            const std::vector<const Tensor*>& exact);

// A row: truncated(k1, k2), or another trainer plugin by name (rtrl, uoro, artbp: its own options'
// defaults), run with "seed" = 1..seeds when seeds > 1 (a randomised estimator, over seeds).
struct TruncationSetting {
  TruncationSetting() = default;
  TruncationSetting(std::int64_t k1_, std::int64_t k2_) : k1(k1_), k2(k2_) {}
  TruncationSetting(std::string trainer_, std::int64_t seeds_)
      : trainer(std::move(trainer_)), seeds(seeds_) {}
  std::int64_t k1 = 0, k2 = 0;
  std::string trainer;  // empty: truncated(k1, k2)
  std::int64_t seeds = 1;
  std::string label() const {
    return trainer.empty() ? std::to_string(k1) + "," + std::to_string(k2) : trainer;
  }
};

// Per segment: the comparison over all parameters (`overall`) and per parameter tensor.
struct TruncationSegment {
  GradientComparison overall;
  std::vector<GradientComparison> parameters;
};
struct TruncationResult {
  TruncationSetting setting;
  std::vector<TruncationSegment> segments;  // segments with at least one counted target (x seeds)
  std::size_t tape_peak_bytes = 0;          // the highest over segments
  double seconds = 0;                       // summed over segments
};
struct TruncationAnalysis {
  std::vector<std::string> parameters;  // names, in Model::parameters() order
  std::int64_t steps = 0, segments = 0, segments_used = 0;
  std::size_t full_tape_peak_bytes = 0;
  double full_seconds = 0;
  std::vector<TruncationResult> results;  // one per setting, in the order given
};

// Makes a trainer plugin by name with options (the registry's make_trainer): the analysis takes g and g_k
// from the "full" and "truncated" plugins themselves, not from a second implementation of either.
using TrainerMaker =
    std::function<std::unique_ptr<Trainer>(const std::string&, const std::map<std::string, std::string>&)>;

// Segment i is steps [i T, (i + 1) T) of data, entered with the state an untruncated forward pass has there.
// The full trainer gives g; trainer `truncated` with k1, k2 (or the setting's trainer, per seed) gives g_k.
// Runs in evaluation mode (no dropout), so all see the same function. Throws std::invalid_argument naming
// --steps, --segments, --k1, --k2 or --seeds.
REWIND_TRAINERS_EXPORT TruncationAnalysis analyze_truncation(Model& model, const Dataset& data,
                                                             std::int64_t steps, std::int64_t segments,
                                                             const std::vector<TruncationSetting>& settings,
                                                             const TrainerMaker& make_trainer);

struct HorizonAnalysis {
  // mean_norm[j], j = 0..lags: mean over loss steps t and rows with a target at t of ||dL_t / dh_{t-j}||,
  // where h_{t-j} is the whole carried state (every layer, h and c) after step t - j (lag 0: the state the
  // loss reads); samples[j] counts them.
  std::vector<double> mean_norm;
  std::vector<std::int64_t> samples;
  // Least-squares fit of log mean_norm[j] = log scale + j log lambda over lags j >= 1.
  double lambda = 0, scale = 0;
  // bias[k - 1], k = 1..lags: estimated relative bias of an unroll of k steps for each loss
  // (docs/truncation.md).
  std::vector<double> bias;
  double tolerance = 0;
  std::int64_t suggested_k = -1;  // the smallest k with bias <= tolerance; -1: none (no decay)
  std::int64_t loss_steps = 0;    // loss steps measured
};

// Over `segments` segments of `steps` steps, at most `loss_steps_per_segment` loss steps each (the latest
// ones with targets), lags 1..lags. Throws std::invalid_argument naming --lags, --tolerance, --steps,
// --segments.
REWIND_TRAINERS_EXPORT HorizonAnalysis analyze_horizon(Model& model, const Dataset& data, std::int64_t steps,
                                                       std::int64_t segments, std::int64_t lags,
                                                       double tolerance, std::int64_t loss_steps_per_segment);

// The same on one stretch of data entered from `start` (a trainer's stored state), with the caller's tape:
// what the adaptive trainer runs on its current parameters. loss_steps == 0 in the result: no target there.
REWIND_TRAINERS_EXPORT HorizonAnalysis estimate_horizon(Model& model, const Dataset& view,
                                                        const std::vector<Tensor>& start, std::int64_t lags,
                                                        double tolerance, std::int64_t loss_steps,
                                                        Tape& tape);

// Relative bias of k-step unrolls from norms phi_0..phi_J (norms[j] = phi_j, lag j) and a geometric tail
// phi_J lambda^(j - J) beyond: sum_{j >= k} phi_j / sum_{j >= 0} phi_j, for k = 1..J. A k-step unroll keeps
// lags 0..k - 1 of each loss (the bound of Aicher, Foti & Fox 2019 under geometric decay;
// docs/truncation.md). A last norm of zero has no tail (resets cut every path further back); otherwise lambda
// >= 1 gives no finite tail, and every entry is 1.
REWIND_TRAINERS_EXPORT std::vector<double> truncation_bias(const std::vector<double>& norms, double lambda);
// The smallest k in [1, bias.size()] with bias[k - 1] <= tolerance, else extrapolated along the geometric
// tail (lambda < 1), else -1.
REWIND_TRAINERS_EXPORT std::int64_t suggested_truncation(const std::vector<double>& norms, double lambda,
                                                         double tolerance);

}  // namespace rwd::trainers
