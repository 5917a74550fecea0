// Time series end to end: CSV columns and gaps, the transforms' fit and round trip, and predictions from the
// Predictor, from predict_frame and from a stepping loop written out here, which must agree.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "helpers.hpp"
#include "plugin_fixtures.hpp"
#include "rewind/models/safetensors.hpp"
#include "rewind/runtime/predictor.hpp"
#include "rewind/runtime/series.hpp"
#include "rewind/runtime/training.hpp"
#include "rewind/trainers/csv.hpp"

using namespace rwd;
using test::TempDir;
using trainers::CsvOptions;
using trainers::CsvTable;
using trainers::Missing;
using trainers::SeriesFrame;

namespace {

// date and label are never used; b has gaps; start begins a sequence.
const char* gappy =
    "date,label,a,b,start\n"
    "20010101,x,1,10,1\n"
    "20010108,y,2,,0\n"
    "20010115,z,3,,0\n"
    "20010122,w,4,40,1\n"
    "20010129,v,5,50,0\n";

}  // namespace

TEST_CASE("CSV: unused columns are never read, keys are carried, gaps are filled as asked", "[series][csv]") {
  TempDir dir;
  const CsvTable table = CsvTable::read(dir.write("g.csv", gappy));
  CsvOptions o{.inputs = {"a", "b"}, .targets = {"b"}, .reset_column = "start", .key_columns = {"date"}};

  CHECK_THROWS_WITH(trainers::series_frame(table, o),
                    Catch::Contains("g.csv' line 3, column 'b': the value is missing (--missing drop"));
  o.missing = Missing::interpolate;
  const SeriesFrame linear = trainers::series_frame(table, o);
  REQUIRE(linear.rows() == 5);
  CHECK(linear.inputs[1][1] == Approx(20.0));  // between 10 and 40, a third of the way per row
  CHECK(linear.inputs[2][1] == Approx(30.0));
  CHECK(linear.keys[3] == std::vector<std::string>{"20010122"});
  CHECK(linear.targets_known == std::vector<std::uint8_t>{1, 0, 0, 1, 1});
  CHECK(linear.resets == std::vector<std::uint8_t>{1, 0, 0, 1, 0});

  o.missing = Missing::ffill;
  const SeriesFrame carried = trainers::series_frame(table, o);
  CHECK(carried.inputs[2][1] == 10.0);

  o.missing = Missing::drop;
  const SeriesFrame dropped = trainers::series_frame(table, o);
  REQUIRE(dropped.rows() == 3);
  CHECK(dropped.lines == std::vector<std::size_t>{2, 5, 6});

  // A reset on a dropped row moves to the next row kept.
  const CsvTable moved = CsvTable::read(dir.write("m.csv", "a,start\n1,0\n,1\n3,0\n"));
  const SeriesFrame after =
      trainers::series_frame(moved, {.inputs = {"a"}, .reset_column = "start", .missing = Missing::drop});
  CHECK(after.resets == std::vector<std::uint8_t>{0, 1});

  // Every other column is an input by default, except keys, the reset column and same-row targets.
  const SeriesFrame defaults = trainers::series_frame(
      table, {.reset_column = "start", .key_columns = {"date", "label"}, .missing = Missing::ffill});
  CHECK(defaults.input_names == std::vector<std::string>{"a", "b"});
  CHECK_THROWS_WITH(trainers::series_frame(table, {.key_columns = {"when"}}),
                    Catch::Contains("has no column 'when' (columns: date, label, a, b, start)"));
  // A text column that is used is refused by line and column.
  CHECK_THROWS_WITH(trainers::series_frame(table, {.inputs = {"label"}}),
                    Catch::Contains("line 2, column 'label': 'x' is not a finite number"));
  // Another delimiter, and a ragged row.
  const CsvTable semicolons = CsvTable::read(dir.write("s.csv", "a;b\n1.5;2\n"), ';');
  CHECK(trainers::series_frame(semicolons, {}).inputs[0] == std::vector<double>{1.5, 2});
  CHECK_THROWS_WITH(CsvTable::read(dir.write("r.csv", "a,b\n1,2\n3\n")),
                    Catch::Contains("line 3: 1 values for 2 columns"));
}

TEST_CASE("transforms are fitted on the training rows only and undo exactly", "[series]") {
  SeriesFrame f;
  f.input_names = {"x", "y"}, f.target_names = {"y"};
  const double xs[] = {1, 4, 2, 8, 5, 7, 100}, ys[] = {10, 12, 11, 15, 14, 18, -50};
  for (int r = 0; r < 7; ++r) {
    f.inputs.push_back({xs[r], ys[r]});
    f.targets.push_back({ys[r]});
    f.resets.push_back(r == 4 ? 1 : 0);
    f.targets_known.push_back(1);
    f.keys.emplace_back();
    f.lines.push_back(static_cast<std::size_t>(r + 2));
  }
  for (const std::string normalize : {"standard", "minmax", "none"})
    for (const bool difference : {false, true}) {
      INFO(normalize << (difference ? ", differenced" : ""));
      runtime::SeriesTransform t{normalize, difference, {}};
      t.fit(f, 6);  // the last row (100, -50) is held out and must not move the statistics
      // The statistics, written out over the training rows' values (their changes, without a sequence's
      // first).
      std::vector<double> x;
      for (int r = 0; r < 6; ++r) {
        if (!difference) x.push_back(xs[r]);
        if (difference && r > 0 && r != 4) x.push_back(xs[r] - xs[r - 1]);
      }
      double mean = 0, lo = x[0], hi = x[0];
      for (double v : x)
        mean += v / static_cast<double>(x.size()), lo = std::min(lo, v), hi = std::max(hi, v);
      double var = 0;
      for (double v : x) var += (v - mean) * (v - mean) / static_cast<double>(x.size());
      const runtime::ColumnScale& s = t.scale_of("x");
      if (normalize == "standard") CHECK((s.shift == Approx(mean) && s.scale == Approx(std::sqrt(var))));
      if (normalize == "minmax") CHECK((s.shift == lo && s.scale == hi - lo));
      if (normalize == "none") CHECK((s.shift == 0 && s.scale == 1));
      // apply() then inverse() gives every value back, row by row, from the row before.
      const SeriesFrame z = t.apply(f);
      for (std::size_t r = 0; r < 7; ++r) {
        const double previous = r == 0 || f.resets[r] ? ys[r] : ys[r - 1];
        CHECK(t.inverse("y", z.targets[r][0], previous) == Approx(ys[r]).margin(1e-12));
        CHECK(t.forward("y", ys[r], previous) == Approx(z.targets[r][0]).margin(1e-12));
      }
    }
  CHECK_THROWS_WITH((runtime::SeriesTransform{"zscore", false, {}}.check()),
                    Catch::Contains("--normalize must be"));
}

namespace {

// A saved series model: an LSTM on inputs (x, y) predicting the next y, differenced and normalised, with a
// reset column, saved as rewind train saves it.
std::string saved_model(const TempDir& dir, const std::string& csv) {
  runtime::RunConfig c;
  c.model = "lstm", c.hidden = 6, c.seed = 5, c.data = csv;
  c.csv = {.inputs = {"x", "y"}, .targets = {"y"}, .reset_column = "start", .key_columns = {"t"}};
  c.transform = {"standard", true, {}};
  c.init_range = 0.5;
  const SeriesFrame frame = runtime::read_series(c, csv);
  c.transform.fit(frame, frame.rows());
  plugins::Registry registry;
  registry.load_directory(REWIND_TEST_PLUGIN_DIR);
  c.record_model_plugin(registry);
  const trainers::SeriesData shape(1, 1, 2, 1);
  auto model = runtime::build_model(registry, c, shape);
  const std::string file = (dir.path / "model.safetensors").string();
  models::save_parameters(file, *model, {{"rewind.run", c.to_json()}});
  return file;
}

}  // namespace

TEST_CASE("predictions: Predictor, predict_frame, predict_series and a stepping loop agree, resets and all",
          "[series][predict]") {
  TempDir dir;
  std::string text = "t,x,y,start\n";
  for (int r = 0; r < 40; ++r)
    text += std::to_string(r) + "," + std::to_string(std::sin(0.3 * r)) + "," +
            std::to_string(std::cos(0.2 * r) + 0.01 * r) + "," + (r == 0 || r == 23 ? "1" : "0") + "\n";
  const std::string csv = dir.write("s.csv", text);
  const std::string file = saved_model(dir, csv);
  runtime::Predictor predictor(file);
  REQUIRE(predictor.series());
  CHECK(predictor.inputs() == std::vector<std::string>{"x", "y"});
  const SeriesFrame frame = runtime::read_series(predictor.config(), csv);

  // The loop written out: the model stepped on a tape, the transform applied by hand from the stored scales.
  const runtime::SeriesTransform& t = predictor.config().transform;
  models::Model& model = predictor.model();
  autodiff::Tape tape(model.config().dtype);
  std::vector<autodiff::Tensor> carried = model.initial_state(1);
  std::vector<double> by_hand;
  for (std::size_t r = 0; r < frame.rows(); ++r) {
    if (frame.resets[r]) carried = model.initial_state(1);
    autodiff::Tensor x(autodiff::Shape::matrix(1, 2), model.config().dtype);
    for (int i = 0; i < 2; ++i) {
      const double v = frame.inputs[r][static_cast<std::size_t>(i)];
      const double change =
          r == 0 || frame.resets[r] ? 0.0 : v - frame.inputs[r - 1][static_cast<std::size_t>(i)];
      const runtime::ColumnScale& s = t.scale_of(i == 0 ? "x" : "y");
      x.set(i, (change - s.shift) / s.scale);
    }
    tape.clear();
    models::ModelState state;
    autodiff::NoGradGuard no_grad;
    model.begin(tape, carried, state);
    const double z = model.step(tape, tape.input(x), state).value().get(0);
    model.end(state, carried);
    const runtime::ColumnScale& s = t.scale_of("y");
    by_hand.push_back(frame.inputs[r][1] + z * s.scale + s.shift);  // the last y plus the predicted change
  }

  const std::vector<std::vector<double>> windowed = runtime::predict_series(model, frame, t);
  const std::vector<runtime::PredictionRow> rows = runtime::predict_frame(predictor, frame);
  predictor.reset();
  for (std::size_t r = 0; r < frame.rows(); ++r) {
    INFO("row " << r);
    const double stepped = predictor.step(frame.inputs[r], frame.targets[r], frame.resets[r] != 0)[0];
    CHECK(stepped == Approx(by_hand[r]).margin(1e-6));
    CHECK(windowed[r][0] == Approx(by_hand[r]).margin(1e-6));
  }
  // One-step rows for every row but the first and row 23, which starts anew, then the next row past the end.
  REQUIRE(rows.size() == 39 - 1 + 1);
  for (const runtime::PredictionRow& p : rows) {
    if (p.step != 1 || p.row >= 40) continue;
    CHECK(p.predicted[0] == Approx(by_hand[static_cast<std::size_t>(p.origin)]).margin(1e-6));
    CHECK(p.actual == frame.targets[static_cast<std::size_t>(p.row)]);
    CHECK(p.keys == frame.keys[static_cast<std::size_t>(p.row)]);
  }
  CHECK(rows.back().row == 40);
  CHECK(rows.back().step == 1);
  CHECK(rows.back().actual.empty());

  // Scores: the errors written out over the target rows from 30 on.
  const runtime::Score score = runtime::evaluate_series(model, {frame, 30}, t);
  double squares = 0, persistence = 0;
  int n = 0;
  for (std::size_t r = 29; r + 1 < frame.rows(); ++r) {
    squares += std::pow(by_hand[r] - frame.targets[r + 1][0], 2);
    persistence += std::pow(frame.targets[r][0] - frame.targets[r + 1][0], 2);
    ++n;
  }
  REQUIRE(score.columns.size() == 1);
  CHECK(score.columns[0].count == n);
  CHECK(score.columns[0].rmse == Approx(std::sqrt(squares / n)).epsilon(1e-5));
  CHECK(score.persistence[0].rmse == Approx(std::sqrt(persistence / n)).epsilon(1e-9));

  // An input that is not a target has no future values: the forecast refuses without them.
  CHECK_THROWS_WITH(
      runtime::predict_frame(predictor, frame, {.horizon = 2}),
      Catch::Contains("input column 'x' is not a target, so its values after the data are unknown"));
  // With the future rows of x: the forecast feeds its predicted y back, step by step, as the loop does.
  runtime::RunConfig future_reading = predictor.config();
  future_reading.csv = {.inputs = {"x"}, .key_columns = {"t"}};
  const SeriesFrame future =
      runtime::read_series(future_reading, dir.write("f.csv", "t,x\n40,0.5\n41,0.25\n"));
  const std::vector<runtime::PredictionRow> forecast =
      runtime::predict_frame(predictor, frame, {.horizon = 3, .future = &future});
  REQUIRE(forecast.size() == 38 + 3);
  const runtime::PredictionRow& last = forecast.back();
  CHECK((last.row == 42 && last.step == 3 && last.origin == 39 && last.keys.empty()));
  CHECK(forecast[forecast.size() - 2].keys == std::vector<std::string>{"41"});  // keys from the future rows
  predictor.reset();
  std::vector<double> y;
  for (std::size_t r = 0; r < frame.rows(); ++r)
    y = predictor.step(frame.inputs[r], frame.targets[r], frame.resets[r] != 0);
  y = predictor.step(std::vector<double>{0.5, y[0]});
  y = predictor.step(std::vector<double>{0.25, y[0]});
  CHECK(last.predicted[0] == Approx(y[0]).margin(1e-9));
}

TEST_CASE("a run fits its transform on the training rows only and stores the columns it resolved",
          "[series]") {
  TempDir dir;
  std::string text = "when,a\n";
  for (int r = 0; r < 20; ++r)
    text += std::to_string(r) + "," + std::to_string(r < 10 ? r % 3 : 1000 + r) + "\n";
  runtime::RunConfig c;
  c.data = dir.write("t.csv", text);
  c.csv.key_columns = {"when"};
  c.val_fraction = 0.5, c.batch = 1;
  const runtime::SeriesSplit split = runtime::load_csv(c);
  // The first 10 rows (0, 1, 2, 0, ...): mean 0.9, population standard deviation 0.8306...; the held-out
  // rows' values in the thousands must not move them.
  const runtime::ColumnScale& s = c.transform.scale_of("a");
  CHECK(s.shift == Approx(0.9));
  CHECK(s.scale == Approx(std::sqrt(0.69)));
  CHECK(c.csv.inputs == std::vector<std::string>{"a"});  // "every other column", resolved and stored
  CHECK(c.csv.targets == std::vector<std::string>{"a"});
  REQUIRE(split.validation);
  CHECK(split.validation->scored_from == 10);  // one stream through the file, the training rows its warm-up
  CHECK(split.validation->frame.rows() == 20);
  const runtime::RunConfig stored = runtime::RunConfig::from_json(c.to_json());
  CHECK(stored.transform.scale_of("a").scale == s.scale);
  CHECK(stored.transform.normalize == "standard");
}

TEST_CASE("a run records whether it flushes denormals, and one saved before it was recorded resumes without",
          "[denormals]") {
  runtime::RunConfig c;
  CHECK(c.flush_denormals);
  c.flush_denormals = false;
  CHECK_FALSE(runtime::RunConfig::from_json(c.to_json()).flush_denormals);
  c.flush_denormals = true;
  nlohmann::json j = nlohmann::json::parse(c.to_json());
  CHECK(runtime::RunConfig::from_json(j.dump()).flush_denormals);
  j.erase("flush_denormals");
  CHECK_FALSE(runtime::RunConfig::from_json(j.dump()).flush_denormals);
}

TEST_CASE("training runs with denormals flushed unless the run keeps them, and restores the mode",
          "[denormals]") {
  for (const bool flush : {true, false}) {
    runtime::RunConfig c;
    c.task = "delay:2", c.task_steps = 40, c.hidden = 4, c.batch = 2, c.eval_every = 0;
    c.flush_denormals = flush;
    plugins::Registry registry;
    registry.load_directory(REWIND_TEST_PLUGIN_DIR);
    runtime::Training training(c, registry, {}, {.max_updates = 2});
    std::vector<bool> seen;
    runtime::TrainingEvents events;
    events.update = [&](const trainers::UpdateReport&, bool) {
      seen.push_back(autodiff::flushing_denormals());
    };
    training.train(events);
    CHECK(seen == std::vector<bool>(2, flush));
    CHECK_FALSE(autodiff::flushing_denormals());
  }
}
