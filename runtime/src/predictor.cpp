#include "rewind/runtime/predictor.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <stdexcept>

#include "rewind/models/safetensors.hpp"

namespace fs = std::filesystem;

namespace rwd::runtime {

struct Predictor::Impl {
  std::string file, note;
  RunConfig config;
  plugins::Registry registry;
  std::unique_ptr<models::Model> model;
  std::vector<std::string> inputs, targets;
  bool next_step = true;
  std::unique_ptr<autodiff::Tape> tape;
  Snapshot now;
  // Buffers of predict(), kept so that a row allocates nothing once they have their sizes.
  autodiff::Tensor x, y;
  models::ModelState state;
  std::vector<double> current, z, out;
  // Where each target column sits among the inputs (-1: not an input).
  std::vector<int> target_in_inputs;
  std::vector<const ColumnScale*> input_scales, target_scales;  // the transform's, by column
};

namespace {

plugins::Registry registry_of(const PluginSearch& search) {
  plugins::Registry registry;
  for (const std::string& f : search.files) registry.load_file(f);
  registry.load_search_path({search.directories.begin(), search.directories.end()});
  return registry;
}

int index_of(const std::vector<std::string>& names, const std::string& name) {
  const auto it = std::ranges::find(names, name);
  return it == names.end() ? -1 : static_cast<int>(it - names.begin());
}

}  // namespace

Predictor::Predictor(const std::string& checkpoint, const PluginSearch& plugins)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  fs::path file = checkpoint;
  if (fs::is_directory(file)) file /= "model.safetensors";
  m.file = file.string();
  std::map<std::string, std::string> meta;
  const models::TensorMap tensors = models::load_safetensors(file, &meta);
  if (!meta.count("rewind.run"))
    throw std::runtime_error("'" + m.file +
                             "' holds no run configuration (rewind.run); was it saved by rewind train?");
  m.config = RunConfig::from_json(meta.at("rewind.run"));
  if (meta.count("rewind.note")) m.note = meta.at("rewind.note");
  if (m.config.series()) {
    // The columns the run resolved; runs saved before they were recorded resolve them from the data's header.
    if (m.config.csv.inputs.empty()) {
      const trainers::SeriesFrame frame = read_series(m.config, m.config.data);
      m.inputs = frame.input_names, m.targets = frame.target_names;
    } else {
      m.inputs = m.config.csv.inputs;
      m.targets = m.config.csv.target_columns.empty() ? m.config.csv.targets : m.config.csv.target_columns;
      if (m.targets.empty()) m.targets = m.inputs;
    }
  }
  build(plugins);
  // A checkpoint also holds optimizer and trainer state: only its parameters are read.
  models::assign_parameters(tensors, *m.model, file, !meta.count("rewind.checkpoint"));
}

Predictor::Predictor(const RunConfig& config, std::vector<std::string> inputs,
                     std::vector<std::string> targets, const PluginSearch& plugins)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.file = "a new " + config.model + " model";
  m.config = config;
  m.inputs = std::move(inputs), m.targets = std::move(targets);
  if (m.targets.empty()) m.targets = m.inputs;
  m.config.csv.inputs = m.inputs;
  (m.config.csv.target_columns.empty() ? m.config.csv.targets : m.config.csv.target_columns) = m.targets;
  build(plugins);
}

void Predictor::build(const PluginSearch& plugins) {
  Impl& m = *impl_;
  m.registry = registry_of(plugins);
  std::unique_ptr<trainers::Dataset> shape;
  if (m.config.series()) {
    m.next_step = m.config.csv.target_columns.empty();
    for (const std::string& t : m.targets) m.target_in_inputs.push_back(index_of(m.inputs, t));
    for (const std::string& c : m.inputs) m.input_scales.push_back(&m.config.transform.scale_of(c));
    for (const std::string& c : m.targets) m.target_scales.push_back(&m.config.transform.scale_of(c));
    shape = std::make_unique<trainers::SeriesData>(1, 1, static_cast<std::int64_t>(m.inputs.size()),
                                                   static_cast<std::int64_t>(m.targets.size()));
  } else if (m.config.token_count() > 0) {
    shape = std::make_unique<trainers::TokenData>(1, 1, m.config.token_count());
  } else {
    throw std::runtime_error("'" + m.file + "' is a model of task '" + m.config.task +
                             "': it reads neither a time series nor text");
  }
  m.model = build_model(m.registry, m.config, *shape);
  m.tape = std::make_unique<autodiff::Tape>(m.model->config().dtype);
  reset();
}

Predictor::~Predictor() = default;
Predictor::Predictor(Predictor&&) noexcept = default;
Predictor& Predictor::operator=(Predictor&&) noexcept = default;

const RunConfig& Predictor::config() const {
  return impl_->config;
}
models::Model& Predictor::model() {
  return *impl_->model;
}
bool Predictor::series() const {
  return impl_->config.series();
}
const std::string& Predictor::file() const {
  return impl_->file;
}
void Predictor::check_data(const std::string& path) const {
  if (!series() && is_csv(path))
    throw std::invalid_argument(
        "'" + impl_->file + "' is a token model (" + trainers::name_of(impl_->config.vocabulary.mode) +
        "): it reads text, not the CSV file '" + path + "' (a model trained on a CSV series reads it)");
}

const std::string& Predictor::note() const {
  return impl_->note;
}
const std::vector<std::string>& Predictor::inputs() const {
  return impl_->inputs;
}
const std::vector<std::string>& Predictor::targets() const {
  return impl_->targets;
}
const ColumnScale& Predictor::target_scale(std::size_t j) const {
  return *impl_->target_scales.at(j);
}
bool Predictor::next_step() const {
  return impl_->next_step;
}

const Predictor::Snapshot& Predictor::snapshot() const {
  return impl_->now;
}
void Predictor::restore(const Snapshot& snapshot) {
  impl_->now = snapshot;
}
void Predictor::reset() {
  impl_->now = {impl_->model->initial_state(1), {}, {}, false};
}

std::vector<double> Predictor::step(std::span<const double> inputs, std::span<const double> current_targets,
                                    bool starts_sequence) {
  const std::span<const double> out = predict(inputs, current_targets, starts_sequence);
  return {out.begin(), out.end()};
}

// The same without allocating once the buffers have their sizes: what rewind online runs for every row.
std::span<const double> Predictor::predict(std::span<const double> inputs,
                                           std::span<const double> current_targets, bool starts_sequence) {
  Impl& m = *impl_;
  if (!series())
    throw std::invalid_argument("Predictor::step: '" + m.file + "' is a token model (step_token)");
  if (inputs.size() != m.inputs.size())
    throw std::invalid_argument("Predictor::step: " + std::to_string(inputs.size()) + " inputs for the " +
                                std::to_string(m.inputs.size()) + " input columns of '" + m.file + "'");
  const SeriesTransform& transform = m.config.transform;
  // The target columns' values at this row: what a predicted change is added to.
  m.current.resize(m.targets.size());
  for (std::size_t j = 0; j < m.targets.size(); ++j) {
    if (m.target_in_inputs[j] >= 0) {
      m.current[j] = inputs[static_cast<std::size_t>(m.target_in_inputs[j])];
    } else if (j < current_targets.size()) {
      m.current[j] = current_targets[j];
    } else if (transform.difference && m.next_step) {
      throw std::invalid_argument("Predictor::step: target '" + m.targets[j] +
                                  "' is not an input: give its value at this row (current_targets), the last "
                                  "value its predicted change is added to");
    } else {
      m.current[j] = 0;
    }
  }
  if (starts_sequence) {
    for (autodiff::Tensor& t : m.now.state) t.fill(0.0);
    m.now.started = false;
  }
  const auto n_in = static_cast<std::int64_t>(inputs.size());
  if (m.x.shape() != autodiff::Shape::matrix(1, n_in))
    m.x = autodiff::Tensor(autodiff::Shape::matrix(1, n_in), m.tape->dtype());
  m.z.resize(inputs.size());
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    // A sequence's first row has no change to report: 0, as in training.
    const double previous = m.now.started ? m.now.last_inputs[i] : inputs[i];
    m.z[i] = transform.forward(*m.input_scales[i], inputs[i], previous);
    m.x.set(static_cast<std::int64_t>(i), m.z[i]);
  }
  // Without a tape when every cell can (Model::infer: the same bits, a fraction of the time at batch 1).
  const autodiff::Tensor* y = m.model->infer(m.x, m.now.state);
  if (y == nullptr) {
    m.tape->clear();
    autodiff::NoGradGuard no_grad;
    autodiff::EvalModeGuard eval;
    m.model->begin(*m.tape, m.now.state, m.state);
    m.model->step(*m.tape, m.tape->input(m.x), m.state).copy_to(m.y);
    m.model->end(m.state, m.now.state);
    y = &m.y;
  }
  m.now.last_inputs.assign(inputs.begin(), inputs.end());
  m.now.last_targets.assign(m.current.begin(), m.current.end());
  m.now.started = true;
  m.out.resize(m.targets.size());
  for (std::size_t j = 0; j < m.out.size(); ++j)
    m.out[j] = transform.inverse(*m.target_scales[j], y->get(static_cast<std::int64_t>(j)), m.current[j]);
  return m.out;
}

std::span<const double> Predictor::model_inputs() const {
  return impl_->z;
}

std::vector<double> Predictor::step_token(std::int32_t token) {
  const std::span<const double> p = predict_token(token);
  return {p.begin(), p.end()};
}

std::span<const double> Predictor::predict_token(std::int32_t token, bool starts_sequence) {
  Impl& m = *impl_;
  if (series())
    throw std::invalid_argument("Predictor::step_token: '" + m.file + "' is a time series model (step)");
  const std::int64_t vocab = m.config.token_count();
  if (token < 0 || token >= vocab)
    throw std::invalid_argument("Predictor::step_token: token " + std::to_string(token) +
                                " is outside the vocabulary of " + std::to_string(vocab));
  if (starts_sequence)
    for (autodiff::Tensor& t : m.now.state) t.fill(0.0);
  const std::int32_t ids[1] = {token};
  const autodiff::Tensor* logits = m.model->infer(ids, m.now.state);
  if (logits == nullptr) {
    m.tape->clear();
    autodiff::NoGradGuard no_grad;
    autodiff::EvalModeGuard eval;
    m.model->begin(*m.tape, m.now.state, m.state);
    m.model->step(*m.tape, ids, m.state).copy_to(m.y);
    m.model->end(m.state, m.now.state);
    logits = &m.y;
  }
  m.now.started = true;
  m.out.resize(static_cast<std::size_t>(vocab));
  double peak = -INFINITY, total = 0;
  for (std::int64_t c = 0; c < vocab; ++c) peak = std::max(peak, logits->get(c));
  for (std::int64_t c = 0; c < vocab; ++c)
    total += m.out[static_cast<std::size_t>(c)] = std::exp(logits->get(c) - peak);
  for (double& v : m.out) v /= total;
  return m.out;
}

// ---- predictions and forecasts of a whole frame ----------------------------------------------------------

namespace {

// A row's targets when they were in the file (not filled in).
std::vector<double> actual(const trainers::SeriesFrame& frame, std::size_t row) {
  return frame.targets_known[row] ? frame.targets[row] : std::vector<double>();
}

// The inputs of forecast row `row`: predicted targets where a target is an input; the others as known, from
// the data within it (a rolling origin) or from the future file past its end.
std::vector<double> forecast_inputs(const Predictor& predictor, const std::vector<double>& predicted,
                                    const trainers::SeriesFrame& frame, std::int64_t row,
                                    const ForecastOptions& options) {
  const std::vector<std::string>& inputs = predictor.inputs();
  const auto rows = static_cast<std::int64_t>(frame.rows());
  std::vector<double> x(inputs.size());
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const int t = index_of(predictor.targets(), inputs[i]);
    if (t >= 0) {
      x[i] = predicted[static_cast<std::size_t>(t)];
    } else if (row < rows) {
      x[i] = frame.inputs[static_cast<std::size_t>(row)][i];
    } else if (!options.future) {
      throw std::invalid_argument(
          "--horizon " + std::to_string(options.horizon) + ": input column '" + inputs[i] +
          "' is not a target, so its values after the data are unknown: give --future "
          "FILE with its next " +
          std::to_string(options.horizon - 1) + " rows");
    } else if (row - rows >= static_cast<std::int64_t>(options.future->rows())) {
      throw std::invalid_argument("--future: " + std::to_string(options.future->rows()) +
                                  " rows are too few for --horizon " + std::to_string(options.horizon) +
                                  " (it needs " + std::to_string(options.horizon - 1) + ")");
    } else {
      const int f = index_of(options.future->input_names, inputs[i]);
      if (f < 0) throw std::invalid_argument("--future has no column '" + inputs[i] + "'");
      x[i] = options.future->inputs[static_cast<std::size_t>(row - rows)][static_cast<std::size_t>(f)];
    }
  }
  return x;
}

// Forecasts `horizon` steps after reading row `origin`, whose prediction is `predicted`; step 1 is emitted
// only past the data's end (within it, the one-step prediction already is that row).
void forecast(Predictor& predictor, const trainers::SeriesFrame& frame, std::int64_t origin,
              std::vector<double> predicted, const ForecastOptions& options,
              std::vector<PredictionRow>& out) {
  const auto rows = static_cast<std::int64_t>(frame.rows());
  for (std::int64_t step = 1; step <= options.horizon; ++step) {
    const std::int64_t row = origin + step;
    PredictionRow p{row, origin, step, {}, {}, predicted};
    if (row < rows) {
      p.keys = frame.keys[static_cast<std::size_t>(row)];
      p.actual = actual(frame, static_cast<std::size_t>(row));
    } else if (options.future && row - rows < static_cast<std::int64_t>(options.future->rows())) {
      p.keys = options.future->keys[static_cast<std::size_t>(row - rows)];
    }
    if (step > 1 || row >= rows) out.push_back(std::move(p));
    if (step == options.horizon) break;
    predicted = predictor.step(forecast_inputs(predictor, predicted, frame, row, options), predicted);
  }
}

}  // namespace

std::vector<PredictionRow> predict_frame(Predictor& predictor, const trainers::SeriesFrame& frame,
                                         const ForecastOptions& options) {
  if (!predictor.next_step())
    throw std::invalid_argument(
        "predictions of same-row targets (--target-columns) are made by rewind eval; "
        "rewind predict forecasts models of the next row (--targets)");
  if (frame.input_names != predictor.inputs() || frame.target_names != predictor.targets())
    throw std::invalid_argument("the data's columns are not the model's (inputs and targets)");
  if (options.horizon < 1) throw std::invalid_argument("--horizon must be >= 1");
  if (options.every < 0) throw std::invalid_argument("--every must be >= 0");
  const auto rows = static_cast<std::int64_t>(frame.rows());
  if (rows == 0) throw std::invalid_argument("the data has no rows");
  predictor.reset();
  std::vector<PredictionRow> out, forecasts;  // one-step predictions in row order, then the forecasts
  for (std::int64_t r = 0; r < rows; ++r) {
    const auto at = static_cast<std::size_t>(r);
    const std::vector<double> predicted =
        predictor.step(frame.inputs[at], frame.targets[at], frame.resets[at] != 0);
    const bool last = r == rows - 1;
    // Rolling origins whose whole horizon lies within the data, so that every forecast is scored.
    const bool origin = options.every > 0 && (r + 1) % options.every == 0 && r + options.horizon < rows;
    if (!last && frame.resets[at + 1] == 0)  // the one-step prediction of the next row
      out.push_back({r + 1, r, 1, frame.keys[at + 1], actual(frame, at + 1), predicted});
    if (origin && options.horizon > 1) {
      const Predictor::Snapshot here = predictor.snapshot();
      forecast(predictor, frame, r, predicted, options, forecasts);
      predictor.restore(here);
    }
    if (last) forecast(predictor, frame, r, predicted, options, forecasts);
  }
  out.insert(out.end(), forecasts.begin(), forecasts.end());
  return out;
}

std::string printable(const std::string& symbol) {
  std::string out;
  for (char c : symbol)
    out += c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : c == '\\' ? "\\\\" : std::string(1, c);
  return out;
}

std::string csv_cell(const std::string& text) {
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string quoted = "\"";
  for (char c : text) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
  return quoted + "\"";
}

void write_predictions(std::ostream& out, const std::vector<std::string>& key_names,
                       const std::vector<std::string>& targets, const std::vector<PredictionRow>& rows) {
  for (const std::string& k : key_names) out << csv_cell(k) << ',';
  out << "row,origin,step";
  for (const std::string& t : targets) out << ',' << csv_cell(t) << ',' << csv_cell(t + "_predicted");
  out << '\n';
  char number[32];
  const auto put = [&](double v) {
    std::snprintf(number, sizeof number, "%.17g", v);
    out << number;
  };
  for (const PredictionRow& r : rows) {
    for (std::size_t k = 0; k < key_names.size(); ++k)
      out << (k < r.keys.size() ? csv_cell(r.keys[k]) : "") << ',';
    out << r.row << ',' << r.origin << ',' << r.step;
    for (std::size_t j = 0; j < targets.size(); ++j) {
      out << ',';
      if (j < r.actual.size()) put(r.actual[j]);
      out << ',';
      put(r.predicted[j]);
    }
    out << '\n';
  }
}

}  // namespace rwd::runtime
