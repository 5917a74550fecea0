// Using a trained model: a saved run rebuilt from its checkpoint's metadata (model plugin, sizes, transforms,
// vocabulary) and stepped one row or token at a time, in the data's own units. What rewind predict, eval and
// sample use, and what a program of your own links (examples/forecast/). docs/timeseries.md.
#pragma once

#include <cstdint>
#include <memory>
#include <ostream>
#include <span>
#include <string>
#include <vector>

#include "rewind/runtime/export.hpp"
#include "rewind/runtime/run_config.hpp"

namespace rwd::runtime {

// Where plugins are looked for besides the file the run recorded and the built-in directory.
struct PluginSearch {
  std::vector<std::string> files, directories;
};

class REWIND_RUNTIME_EXPORT Predictor {
 public:
  // checkpoint: a run's directory (its model.safetensors), or a model.safetensors or checkpoint.safetensors
  // file. Errors name the file: not a rewind model, a missing plugin (with the file it was loaded from).
  explicit Predictor(const std::string& checkpoint, const PluginSearch& plugins = {});
  // A new model of the run's options (its seed's initial parameters) reading these columns, for a time series
  // (targets empty: the inputs): what rewind online starts from without a checkpoint.
  Predictor(const RunConfig& config, std::vector<std::string> inputs, std::vector<std::string> targets,
            const PluginSearch& plugins = {});
  ~Predictor();
  Predictor(Predictor&&) noexcept;
  Predictor& operator=(Predictor&&) noexcept;

  const RunConfig& config() const;
  models::Model& model();
  bool series() const;              // a time series model; otherwise tokens
  const std::string& file() const;  // the .safetensors file read
  const std::string& note() const;  // what the file says of itself ("rewind.note"), or empty
  // Refuses data of the other kind by name: a CSV file for a token model.
  void check_data(const std::string& path) const;

  // ---- time series: one row at a time, in the data's units ----
  const std::vector<std::string>& inputs() const;   // the input columns, in the order step() takes them
  const std::vector<std::string>& targets() const;  // the predicted columns, in the order step() returns
  bool next_step() const;
  // The scale of target j (config().transform's, looked up once): what an online learner reads a row's actual
  // values into the model's units with.
  const ColumnScale& target_scale(
      std::size_t j) const;  // predicts the next row's targets (--targets) or this row's (--target-columns)
  // Reads one row: its input values, and the target columns' values at this row when a target is not an input
  // and the model was trained on differences (the last value a predicted change is added to); starts_sequence
  // zeroes the state first. Returns the predicted targets of the next row (next_step()) or of this one.
  std::vector<double> step(std::span<const double> inputs, std::span<const double> current_targets = {},
                           bool starts_sequence = false);
  // step() into buffers of the predictor's own (valid until the next call): no allocation per row.
  std::span<const double> predict(std::span<const double> inputs,
                                  std::span<const double> current_targets = {}, bool starts_sequence = false);
  // The last row read, as the model read it (transformed): what an online learner records.
  std::span<const double> model_inputs() const;

  // ---- tokens ----
  // Reads one token id; returns the probabilities of the next token (softmax of the logits).
  std::vector<double> step_token(std::int32_t token);
  // step_token() into a buffer of the predictor's own (valid until the next call), starting a new sequence
  // when told: no allocation per token.
  std::span<const double> predict_token(std::int32_t token, bool starts_sequence = false);

  // The state to start from again (a forecast from an origin goes back to it): the model's carried state and,
  // for differences, the last values read.
  struct Snapshot {
    std::vector<autodiff::Tensor> state;
    std::vector<double> last_inputs, last_targets;
    bool started = false;
  };
  const Snapshot& snapshot() const;
  void restore(const Snapshot& snapshot);
  void reset();  // a zero state, nothing read yet

 private:
  void build(const PluginSearch& plugins);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// One row of rewind predict's output: the row predicted (index into the data; >= its rows beyond the end),
// the last row read before (the origin), how many steps ahead of the origin, the keys and actual values when
// known, and the prediction.
struct PredictionRow {
  std::int64_t row = 0, origin = 0, step = 1;
  std::vector<std::string> keys;
  std::vector<double> actual;  // empty when unknown
  std::vector<double> predicted;
};

struct ForecastOptions {
  std::int64_t horizon = 1;  // steps forecast past the last row read (1: the next row only)
  std::int64_t every =
      0;  // > 0: also a forecast of `horizon` steps after every `every` rows (rolling origin)
  // The rows after the data: inputs that are not targets (and keys) for the forecast steps.
  const trainers::SeriesFrame* future = nullptr;
};

// One-step predictions of every row of a frame (its state carried through, resets honoured), in row order,
// then the forecasts: with options.every the rolling-origin ones, and options.horizon steps from the end,
// feeding predictions back where a target is also an input; with options.every, rolling-origin forecasts too.
// An input that is not a target needs options.future for the steps past the end, else it is refused by name.
REWIND_RUNTIME_EXPORT std::vector<PredictionRow> predict_frame(Predictor& predictor,
                                                               const trainers::SeriesFrame& frame,
                                                               const ForecastOptions& options = {});

// The rows as CSV: the key columns, row, origin, step, then each target's actual value (empty when unknown)
// and its prediction (TARGET_predicted), full precision.
REWIND_RUNTIME_EXPORT void write_predictions(std::ostream& out, const std::vector<std::string>& key_names,
                                             const std::vector<std::string>& targets,
                                             const std::vector<PredictionRow>& rows);
// A CSV cell: quoted when it holds a comma, a quote or a line break.
REWIND_RUNTIME_EXPORT std::string csv_cell(const std::string& text);
// A token's symbol on one line: line ends and tabs as \n, \r and \t (and a backslash as \\).
REWIND_RUNTIME_EXPORT std::string printable(const std::string& symbol);

}  // namespace rwd::runtime
