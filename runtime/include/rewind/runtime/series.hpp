// Time series in the data's own units: the transforms a run fits on its training rows (normalisation,
// differencing), stores with the model and undoes on every output, and the errors of its predictions per
// column beside those of persistence. docs/timeseries.md.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "rewind/runtime/export.hpp"
#include "rewind/trainers/csv.hpp"
#include "rewind/trainers/evaluate.hpp"

namespace rwd::models {
class Model;
}

namespace rwd::runtime {

// z = (v - shift) / scale for one column, after differencing when asked.
struct ColumnScale {
  double shift = 0, scale = 1;
};

// Fitted on the training rows only. difference: each input and target column becomes its change from the row
// before (0 at a sequence's first row); a prediction is the last value plus the predicted change. normalize:
// standard (mean 0, standard deviation 1), minmax (into [0, 1]) or none.
struct REWIND_RUNTIME_EXPORT SeriesTransform {
  std::string normalize = "standard";
  bool difference = false;
  std::map<std::string, ColumnScale> columns;  // by column name; inputs and targets share a column's scale

  // Refuses an unknown normalize, naming --normalize.
  void check() const;
  // Fits every input and target column's scale on frame rows [0, rows).
  void fit(const trainers::SeriesFrame& frame, std::size_t rows);
  // The frame in the model's units: differenced (resets respected), then scaled.
  trainers::SeriesFrame apply(const trainers::SeriesFrame& frame) const;
  // One value into and out of the model's units; previous: the column's value at the row before (ignored
  // without differencing).
  double forward(const std::string& column, double value, double previous) const;
  double inverse(const std::string& column, double z, double previous) const;
  // The same with the column's scale looked up once (scale_of): what a row-by-row loop calls.
  double forward(const ColumnScale& s, double value, double previous) const {
    return ((difference ? value - previous : value) - s.shift) / s.scale;
  }
  double inverse(const ColumnScale& s, double z, double previous) const {
    const double v = z * s.scale + s.shift;
    return difference ? previous + v : v;
  }
  const ColumnScale& scale_of(const std::string& column) const;  // throws naming a column never fitted
};

// Errors of one target column over the scored rows, in the data's units.
struct ColumnErrors {
  std::string column;
  double mse = 0, rmse = 0, mae = 0;
  std::int64_t count = 0;
};

// What an evaluation measured: the model-space loss (what training minimises; for the plateau schedule, the
// best model and early stopping), and for time series the errors per target column in the data's units, of
// the model and of persistence (the last value as the prediction).
struct Score {
  trainers::Evaluation model;
  std::vector<ColumnErrors> columns, persistence;
};

// "loss 0.0123 (model units); co2: RMSE 0.412, MAE 0.310, MSE 0.170 over 456 rows (persistence: RMSE 0.510,
// MAE 0.400)": a time series' score as the CLI prints it.
REWIND_RUNTIME_EXPORT std::string describe_errors(const Score& score);

// A held-out series: its rows in the data's units, scored from scored_from on (the rows before only warm the
// state up: the training rows before a --val-fraction split, or --warmup-rows of a file).
struct HeldOutSeries {
  trainers::SeriesFrame frame;
  std::size_t scored_from = 0;
};

// One-step predictions of every row of a frame (in the data's units), from one stream whose state is carried
// through the frame (resets honoured): predictions[r] is what the model predicts after reading input row r,
// for target row r + 1 (next-step) or r. Empty where there is no target to predict.
REWIND_RUNTIME_EXPORT std::vector<std::vector<double>> predict_series(models::Model& model,
                                                                      const trainers::SeriesFrame& frame,
                                                                      const SeriesTransform& transform);
// The model's and persistence's errors on the scored rows, and the model-space loss on them.
REWIND_RUNTIME_EXPORT Score evaluate_series(models::Model& model, const HeldOutSeries& held_out,
                                            const SeriesTransform& transform);

}  // namespace rwd::runtime
