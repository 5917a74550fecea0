#include "rewind/runtime/series.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>

#include "rewind/models/model.hpp"

namespace rwd::runtime {

using trainers::SeriesFrame;

void SeriesTransform::check() const {
  if (normalize != "standard" && normalize != "minmax" && normalize != "none")
    throw std::invalid_argument("--normalize must be standard, minmax or none, got '" + normalize + "'");
}

namespace {

// Each column minus its value at the row before; 0 at the first row and where a sequence starts.
void difference_in_place(std::vector<std::vector<double>>& rows, const std::vector<std::uint8_t>& resets) {
  for (std::size_t r = rows.size(); r-- > 0;)
    for (std::size_t c = 0; c < rows[r].size(); ++c)
      rows[r][c] = r == 0 || resets[r] ? 0.0 : rows[r][c] - rows[r - 1][c];
}

ColumnScale fit_column(const std::vector<double>& values, const std::string& normalize) {
  if (normalize == "none" || values.empty()) return {};
  if (normalize == "minmax") {
    const auto [lo, hi] = std::ranges::minmax_element(values);
    return {*lo, *hi > *lo ? *hi - *lo : 1.0};
  }
  double mean = 0;
  for (double v : values) mean += v;
  mean /= static_cast<double>(values.size());
  double squares = 0;
  for (double v : values) squares += (v - mean) * (v - mean);
  const double sd = std::sqrt(squares / static_cast<double>(values.size()));  // the population's, as sklearn
  return {mean, sd > 0 ? sd : 1.0};
}

}  // namespace

void SeriesTransform::fit(const SeriesFrame& frame, std::size_t rows) {
  check();
  if (difference && !frame.next_step)
    throw std::invalid_argument(
        "--difference applies to next-step targets (--targets), not to --target-columns of the same row");
  columns.clear();
  SeriesFrame diffed = frame;
  if (difference) {
    difference_in_place(diffed.inputs, diffed.resets);
    difference_in_place(diffed.targets, diffed.resets);
  }
  rows = std::min(rows, frame.rows());
  const auto fit_all = [&](const std::vector<std::string>& names,
                           const std::vector<std::vector<double>>& values) {
    for (std::size_t c = 0; c < names.size(); ++c) {
      if (columns.count(names[c])) continue;
      std::vector<double> column;
      for (std::size_t r = 0; r < rows; ++r)
        if (!difference || (r > 0 && !diffed.resets[r])) column.push_back(values[r][c]);  // a real change
      columns[names[c]] = fit_column(column, normalize);
    }
  };
  fit_all(frame.input_names, diffed.inputs);
  fit_all(frame.target_names, diffed.targets);
}

const ColumnScale& SeriesTransform::scale_of(const std::string& column) const {
  const auto it = columns.find(column);
  if (it == columns.end())
    throw std::invalid_argument("column '" + column +
                                "' has no fitted transform (the model was trained without it)");
  return it->second;
}

SeriesFrame SeriesTransform::apply(const SeriesFrame& frame) const {
  SeriesFrame out = frame;
  if (difference) {
    difference_in_place(out.inputs, out.resets);
    difference_in_place(out.targets, out.resets);
  }
  const auto scale_all = [&](const std::vector<std::string>& names,
                             std::vector<std::vector<double>>& values) {
    for (std::size_t c = 0; c < names.size(); ++c) {
      const ColumnScale& s = scale_of(names[c]);
      for (auto& row : values) row[c] = (row[c] - s.shift) / s.scale;
    }
  };
  scale_all(out.input_names, out.inputs);
  scale_all(out.target_names, out.targets);
  return out;
}

double SeriesTransform::forward(const std::string& column, double value, double previous) const {
  return forward(scale_of(column), value, previous);
}

double SeriesTransform::inverse(const std::string& column, double z, double previous) const {
  return inverse(scale_of(column), z, previous);
}

namespace {

// The model's outputs (its own units) after each input row of a transformed frame, one stream, windows of
// `window` rows on a tape that is cleared between them.
std::vector<std::vector<double>> model_outputs(models::Model& model, const SeriesFrame& z) {
  autodiff::NoGradGuard no_grad;
  autodiff::EvalModeGuard eval;
  constexpr std::size_t window = 256;
  autodiff::Tape tape(model.config().dtype);
  std::vector<autodiff::Tensor> carried = model.initial_state(1);
  const auto n_in = static_cast<std::int64_t>(z.input_names.size());
  std::vector<std::vector<double>> out;
  out.reserve(z.rows());
  for (std::size_t begin = 0; begin < z.rows(); begin += window) {
    const std::size_t n = std::min(window, z.rows() - begin);
    autodiff::Tensor x(autodiff::Shape::matrix(static_cast<std::int64_t>(n), n_in), model.config().dtype);
    std::vector<std::uint8_t> resets(n);
    for (std::size_t r = 0; r < n; ++r) {
      for (std::int64_t i = 0; i < n_in; ++i)
        x.set(static_cast<std::int64_t>(r) * n_in + i, z.inputs[begin + r][static_cast<std::size_t>(i)]);
      resets[r] = z.resets[begin + r];
    }
    tape.clear();
    models::ModelState state;
    model.begin(tape, carried, state);
    const autodiff::Tensor y = model.run(tape, tape.input(x), state, resets).value();
    model.end(state, carried);
    const std::int64_t cols = y.shape().cols;
    for (std::size_t r = 0; r < n; ++r) {
      std::vector<double> row(static_cast<std::size_t>(cols));
      for (std::int64_t j = 0; j < cols; ++j)
        row[static_cast<std::size_t>(j)] = y.get(static_cast<std::int64_t>(r) * cols + j);
      out.push_back(std::move(row));
    }
  }
  return out;
}

// The row whose targets input row r predicts, and the row before it (the last value, for differencing).
std::size_t target_row(const SeriesFrame& f, std::size_t r) {
  return f.next_step ? r + 1 : r;
}

}  // namespace

std::vector<std::vector<double>> predict_series(models::Model& model, const SeriesFrame& frame,
                                                const SeriesTransform& transform) {
  std::vector<std::vector<double>> out = model_outputs(model, transform.apply(frame));
  for (std::size_t r = 0; r < out.size(); ++r)
    for (std::size_t j = 0; j < out[r].size(); ++j)
      // Next-step: the last value of the target column is its value at the input row.
      out[r][j] = transform.inverse(frame.target_names[j], out[r][j], frame.targets[r][j]);
  return out;
}

std::string describe_errors(const Score& score) {
  char text[256];
  std::snprintf(text, sizeof text, "loss %.4f (model units)", score.model.loss);
  std::string out = text;
  for (std::size_t j = 0; j < score.columns.size(); ++j) {
    const ColumnErrors& c = score.columns[j];
    std::snprintf(text, sizeof text, "; %s: RMSE %.4g, MAE %.4g, MSE %.4g over %lld rows", c.column.c_str(),
                  c.rmse, c.mae, c.mse, static_cast<long long>(c.count));
    out += text;
    if (j < score.persistence.size() && score.persistence[j].count > 0) {
      const ColumnErrors& p = score.persistence[j];
      std::snprintf(text, sizeof text, " (persistence: RMSE %.4g, MAE %.4g; ratio %.3f)", p.rmse, p.mae,
                    p.rmse > 0 ? c.rmse / p.rmse : NAN);
      out += text;
    }
  }
  return out;
}

Score evaluate_series(models::Model& model, const HeldOutSeries& held_out, const SeriesTransform& transform) {
  const SeriesFrame& f = held_out.frame;
  const SeriesFrame z = transform.apply(f);
  const std::vector<std::vector<double>> outputs = model_outputs(model, z);
  const std::size_t n_out = f.target_names.size();
  struct Sums {
    double squares = 0, absolute = 0;
    std::int64_t count = 0;
    void add(double error) { squares += error * error, absolute += std::fabs(error), ++count; }
  };
  std::vector<Sums> model_sums(n_out), persistence_sums(n_out);
  double loss = 0;
  std::int64_t scored = 0;
  for (std::size_t r = 0; r < f.rows(); ++r) {
    const std::size_t t = target_row(f, r);
    if (!f.has_target(r) || t < held_out.scored_from || !f.targets_known[t]) continue;
    ++scored;
    for (std::size_t j = 0; j < n_out; ++j) {
      const double o = outputs[r][j];
      loss += (o - z.targets[t][j]) * (o - z.targets[t][j]);
      // Persistence repeats the last value read, filled in or not, as a forecaster would.
      const double last = f.next_step ? f.targets[r][j] : (r > 0 && !f.resets[r] ? f.targets[r - 1][j] : NAN);
      model_sums[j].add(transform.inverse(f.target_names[j], o, f.targets[r][j]) - f.targets[t][j]);
      if (!std::isnan(last)) persistence_sums[j].add(last - f.targets[t][j]);
    }
  }
  Score s;
  s.model = {scored > 0 ? loss / static_cast<double>(scored) : 0.0, scored, 0};
  const auto errors = [&](const std::vector<Sums>& sums) {
    std::vector<ColumnErrors> out;
    for (std::size_t j = 0; j < n_out; ++j) {
      const double n = static_cast<double>(std::max<std::int64_t>(sums[j].count, 1));
      out.push_back({f.target_names[j], sums[j].squares / n, std::sqrt(sums[j].squares / n),
                     sums[j].absolute / n, sums[j].count});
    }
    return out;
  };
  s.columns = errors(model_sums);
  s.persistence = errors(persistence_sums);
  return s;
}

}  // namespace rwd::runtime
