// Learning on a live stream: each row is first predicted (the prediction of the next row, made before it is
// seen), then learnt from: every k1 rows one truncated-BPTT update over the last k2, exactly the updates of
// `rewind train --trainer truncated --k1 --k2 --batch 1 --epochs 1` on the same rows. Memory is bounded by k2
// and the model, not by the stream: a ring of the last rows and the state where the next update's unroll
// starts. docs/online.md.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "rewind/runtime/export.hpp"
#include "rewind/runtime/predictor.hpp"
#include "rewind/runtime/series.hpp"

namespace rwd::runtime {

struct OnlineOptions {
  std::int64_t k1 = 1, k2 = 24;  // an update every k1 rows, backpropagated through the last k2
  bool learn = true;             // false: predict only (a frozen model)
  double clip = 0;               // gradient-norm clipping (0: none)
  // Updates with a non-finite loss or gradient are skipped (nothing changes); this many in a row stop the
  // stream with the diagnosis, as rewind train --on-nonfinite skip.
  std::int64_t max_nonfinite_skips = 10;
};

// What the learner has done so far.
struct OnlineCounts {
  std::int64_t rows = 0;     // rows (or tokens) read
  std::int64_t updates = 0;  // optimizer steps taken
  std::int64_t skipped = 0;  // non-finite updates skipped
  double last_loss = 0;      // the last update's loss, in model units
};

class REWIND_RUNTIME_EXPORT OnlineLearner {
 public:
  // Continues a trained model (its transforms, columns and, when it was saved by rewind online or train, its
  // optimizer's settings); the optimizer's state starts afresh unless `resume` names an online save.
  OnlineLearner(Predictor predictor, const OnlineOptions& options,
                const trainers::OptimizerConfig& optimizer);
  ~OnlineLearner();
  OnlineLearner(OnlineLearner&&) noexcept;
  OnlineLearner& operator=(OnlineLearner&&) noexcept;

  // Reads a saved online run (rewind online --save DIR: DIR or its online.safetensors): model, optimizer, the
  // ring of rows, every state. Rows fed from counts().rows on continue it exactly.
  static OnlineLearner resume(const std::string& saved, const PluginSearch& plugins = {});

  // Continues the optimizer of a training run (its checkpoint.safetensors: Adam's moments and update count)
  // instead of starting it afresh, whose first updates are full-size steps whatever the gradient. The run
  // must be the one whose model this learner continues, with the same optimizer.
  void continue_optimizer(const std::string& checkpoint_file);

  Predictor& predictor();
  const Predictor& predictor() const;
  const OnlineOptions& options() const;
  // Stops learning for good: the model predicts as it is from here on (and its saves resume frozen).
  void freeze();
  const OnlineCounts& counts() const;

  // Reads one row in the data's units (its inputs, and its targets' values: the actual values the last
  // prediction is scored against and learnt from), starting a new sequence when told, and returns the
  // prediction of the next row's targets (valid until the next call); then learns when the row completes k1
  // steps. observe() and learn() are its two halves, for timing them apart.
  std::span<const double> step(std::span<const double> inputs, std::span<const double> targets,
                               bool starts_sequence = false);
  std::span<const double> observe(std::span<const double> inputs, std::span<const double> targets,
                                  bool starts_sequence = false);
  // The same for a token model: reads one token, the answer to the last prediction, and returns the
  // probabilities of the next token (valid until the next call).
  std::span<const double> step_token(std::int32_t token, bool starts_sequence = false);
  std::span<const double> observe_token(std::int32_t token, bool starts_sequence = false);
  // The update due after the rows observed, if any; true when one ran. Rows short of k1 at a stream's end
  // wait for the next rows (a save keeps them), so that a stream continued later takes exactly the same
  // updates.
  bool learn();
  // Everything needed to go on exactly, in DIR/online.safetensors, and the model alone in
  // DIR/model.safetensors (for rewind predict and eval), each written atomically; metadata goes into both.
  void save(const std::string& dir, const std::map<std::string, std::string>& metadata = {});
  static constexpr const char* state_file = "online.safetensors";

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  explicit OnlineLearner(std::unique_ptr<Impl> impl);
};

// Percentiles of a set of latencies, in microseconds.
struct Latency {
  double p50 = 0, p99 = 0, max = 0;
  std::int64_t count = 0;
};

// Any number of latencies in fixed memory: a histogram of nanoseconds with 64 buckets per octave (the layout
// of HdrHistogram), so a percentile is within 1/128 of a recorded value (exact below 128 ns) and the maximum
// is exact. Times beyond 2^47 ns (39 hours) count in the last bucket.
class REWIND_RUNTIME_EXPORT LatencyHistogram {
 public:
  void add(double seconds);
  Latency summary() const;  // microseconds
  void clear();

 private:
  static constexpr int exact = 128, per_octave = 64, octaves = 40;
  static std::size_t bucket(std::uint64_t nanoseconds);
  static double value(std::size_t bucket);  // the middle of its range, in nanoseconds
  std::array<std::int64_t, exact + per_octave * octaves> counts_{};
  std::int64_t count_ = 0;
  double max_ = 0;  // seconds
};

// Test-then-train scores of a stream: each row's actual target values against the prediction made at the row
// before, in the data's units, with the time each row took to predict and each update to learn. Kept for an
// interval of rows (take() ends it) and for the whole stream, in memory that neither length changes.
class REWIND_RUNTIME_EXPORT PrequentialScore {
 public:
  PrequentialScore(std::vector<std::string> targets, std::int64_t interval_rows);

  // The row's actual values and what was predicted for them (nothing when the row starts a sequence or is the
  // first: nothing was predicted for it).
  void score(std::span<const double> predicted, std::span<const double> actual);
  // Tokens: the probabilities predicted for this token, and the token read.
  void score_token(std::span<const double> predicted, std::int32_t actual);
  // The row took predict_seconds to read and predict, and learn_seconds to learn (an update ran when
  // learned).
  void time(double predict_seconds, double learn_seconds, bool learned, double loss);

  // Of tokens: the mean log loss of the token read under its prediction (nats) and how often it was the most
  // probable one.
  struct TokenScores {
    std::int64_t count = 0;
    double log_loss = 0, accuracy = 0;
  };
  struct Interval {
    std::int64_t rows = 0, updates = 0;
    std::vector<ColumnErrors> columns;  // over the interval's scored rows
    TokenScores tokens;                 // over its scored tokens
    double mean_loss = 0;               // of its updates, in model units
    Latency predict, learn;             // per row; per update
  };
  Interval take();                          // the interval since the last take(), then a new one
  std::vector<ColumnErrors> total() const;  // over every row scored
  TokenScores total_tokens() const;         // over every token scored
  bool interval_full() const { return rows_ >= interval_rows_; }

 private:
  std::vector<std::string> targets_;
  std::int64_t interval_rows_, rows_ = 0, updates_ = 0;
  LatencyHistogram predict_, learn_;
  double loss_sum_ = 0;
  struct Sums {
    std::vector<double> squared, absolute;
    std::vector<std::int64_t> count;
    void clear();
    std::vector<ColumnErrors> errors(const std::vector<std::string>& targets) const;
  } interval_, total_;
  struct TokenSums {
    std::int64_t count = 0, correct = 0;
    double nats = 0;
    TokenScores scores() const;
  } interval_tokens_, total_tokens_;
};

}  // namespace rwd::runtime
