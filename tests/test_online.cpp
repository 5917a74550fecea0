// The online learner (issue 24): no heap allocation per row once warm; a save in the middle of a stream and a
// learner resumed from it end where an uninterrupted one does, bitwise; predicting only is the Predictor's
// stepping; the row parser names the line and column of what it refuses.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <random>

#include "helpers.hpp"
#include "rewind/runtime/online.hpp"
#include "rewind/runtime/stream.hpp"
#include "rewind/trainers/tokens.hpp"

using namespace rwd;
using Catch::Matchers::Contains;

namespace {

const runtime::PluginSearch search{.files = {}, .directories = {REWIND_TEST_PLUGIN_DIR}};

// A new LSTM reading (x, y) and predicting the next x, differenced (the transform keeps the last row), in its
// data's units.
runtime::Predictor new_predictor(std::int64_t hidden = 8) {
  runtime::RunConfig c;
  c.model = "lstm", c.hidden = hidden, c.seed = 3, c.format = "csv", c.data = "stream";
  c.transform.normalize = "none", c.transform.difference = true;
  for (const char* column : {"x", "y"}) c.transform.columns[column] = {};
  c.optimizer.lr = 0.01;
  return runtime::Predictor(c, {"x", "y"}, {"x"}, search);
}

struct Row {
  std::vector<double> inputs, targets;
  bool starts = false;
};
Row row_at(int r) {
  const double x = std::sin(0.2 * r) + 0.1 * std::cos(1.3 * r), y = std::cos(0.05 * r);
  return {{x, y}, {x}, r == 57};  // a second sequence from row 57
}

std::vector<std::vector<double>> parameters(runtime::OnlineLearner& learner) {
  std::vector<std::vector<double>> out;
  for (autodiff::Parameter* p : learner.predictor().model().parameters()) {
    const autodiff::Tensor& t = p->value();
    std::vector<double> v(static_cast<std::size_t>(t.numel()));
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = t.get(static_cast<std::int64_t>(i));
    out.push_back(v);
  }
  return out;
}

}  // namespace

TEST_CASE("online: no heap allocation per row once warm, predicting and learning", "[online][allocation]") {
  for (const auto& [k1, k2] : {std::pair<std::int64_t, std::int64_t>{1, 24}, {24, 24}, {5, 12}}) {
    CAPTURE(k1, k2);
    runtime::OnlineLearner learner(new_predictor(32), {.k1 = k1, .k2 = k2}, {.lr = 0.01});
    runtime::RowParser parser("t,x,y", {"x", "y"}, {"x"}, {"t"}, "");
    runtime::ParsedRow parsed;
    std::string line;
    const auto feed = [&](int r) {
      const Row row = row_at(r);
      line = std::to_string(r) + "," + std::to_string(row.inputs[0]) + "," + std::to_string(row.inputs[1]);
      const std::size_t before = test::heap_allocations();
      parser.parse(line, r + 2, parsed);
      learner.step(parsed.inputs, parsed.targets, parsed.starts_sequence);
      return test::heap_allocations() - before;
    };
    for (int r = 0; r < 3 * k2 + 10; ++r) feed(r);  // warm-up: every buffer and arena block sized
    std::size_t allocations = 0;
    for (int r = 3 * static_cast<int>(k2) + 10; r < 400; ++r) allocations += feed(r);
    CHECK(learner.counts().updates > 0);
    CHECK(allocations == 0);
  }
}

TEST_CASE("online: a token model steps and learns with no heap allocation per token once warm",
          "[online][allocation]") {
  runtime::RunConfig c;
  c.model = "lstm", c.hidden = 16, c.seed = 2, c.data = "stream";
  c.vocabulary = trainers::Vocabulary::of(trainers::TokenMode::chars, {"the cat sat\n"}, {"text"});
  c.optimizer.lr = 0.01;
  runtime::OnlineLearner learner(runtime::Predictor(c, {}, {}, search), {.k1 = 3, .k2 = 8}, c.optimizer);
  const std::int32_t vocab = static_cast<std::int32_t>(c.vocabulary.size());
  const auto feed = [&](int t) {
    const std::size_t before = test::heap_allocations();
    const std::span<const double> p = learner.step_token((t * 7 + t / 5) % vocab, t % 110 == 20);
    CHECK(static_cast<std::int32_t>(p.size()) == vocab);
    return test::heap_allocations() - before;
  };
  for (int t = 0; t < 40; ++t) feed(t);  // a new sequence at 20 (and 130 and 240, once warm)
  std::size_t allocations = 0;
  for (int t = 40; t < 300; ++t) allocations += feed(t);
  CHECK(learner.counts().updates > 50);
  CHECK(allocations == 0);
  CHECK_THROWS_WITH(learner.step_token(vocab), Contains("token " + std::to_string(vocab) + " is outside"));
  CHECK_THROWS_WITH(learner.step(std::vector<double>{1.0}, {}), Contains("reads tokens (observe_token)"));
}

TEST_CASE("online: a learner resumed from a save mid-stream ends bitwise where an uninterrupted one does",
          "[online]") {
  test::TempDir dir;
  const runtime::OnlineOptions options{.k1 = 3, .k2 = 7, .clip = 1.0};
  const trainers::OptimizerConfig adam{.kind = "adam", .lr = 0.02};
  runtime::OnlineLearner whole(new_predictor(), options, adam);
  std::vector<double> last_whole, last_resumed;
  for (int r = 0; r < 120; ++r) {
    const Row row = row_at(r);
    const auto p = whole.step(row.inputs, row.targets, row.starts);
    last_whole.assign(p.begin(), p.end());
  }
  runtime::OnlineLearner first(new_predictor(), options, adam);
  for (int r = 0; r < 50; ++r) first.step(row_at(r).inputs, row_at(r).targets, row_at(r).starts);
  first.save(dir.path.string());
  runtime::OnlineLearner resumed = runtime::OnlineLearner::resume(dir.path.string(), search);
  CHECK(resumed.counts().rows == 50);
  CHECK(resumed.options().k2 == 7);
  for (int r = 50; r < 120; ++r) {
    const Row row = row_at(r);
    const auto p = resumed.step(row.inputs, row.targets, row.starts);
    last_resumed.assign(p.begin(), p.end());
  }
  CHECK(resumed.counts().updates == whole.counts().updates);
  CHECK(parameters(resumed) == parameters(whole));
  CHECK(last_resumed == last_whole);
  // The model alone beside it reads back as a predictor, with the run's columns.
  const runtime::Predictor saved((dir.path / "model.safetensors").string(), search);
  CHECK(saved.inputs() == std::vector<std::string>{"x", "y"});
}

TEST_CASE("online: predicting only is the Predictor's stepping, and the model does not change", "[online]") {
  runtime::OnlineLearner frozen(new_predictor(), {.k1 = 2, .k2 = 4, .learn = false}, {});
  runtime::Predictor stepped = new_predictor();
  const auto before = parameters(frozen);
  for (int r = 0; r < 80; ++r) {
    const Row row = row_at(r);
    const auto a = frozen.step(row.inputs, row.targets, row.starts);
    const std::vector<double> b = stepped.step(row.inputs, row.targets, row.starts);
    REQUIRE(std::vector<double>(a.begin(), a.end()) == b);
  }
  CHECK(frozen.counts().updates == 0);
  CHECK(parameters(frozen) == before);
}

TEST_CASE("online: latency percentiles within 1/128 of nth_element's, in memory no interval changes",
          "[online]") {
  std::mt19937_64 rng(9);
  // Times from 20 ns to 20 s, log-uniform, and a few exact ones below 128 ns.
  std::uniform_real_distribution<double> exponent(std::log(20e-9), std::log(20.0));
  std::vector<double> seconds;
  for (int i = 0; i < 20000; ++i) seconds.push_back(std::exp(exponent(rng)));
  for (double ns : {3.0, 64.0, 127.0}) seconds.push_back(ns * 1e-9);
  runtime::LatencyHistogram histogram;
  for (double s : seconds) histogram.add(s);
  const runtime::Latency l = histogram.summary();
  const auto exact = [&](double q) {
    std::vector<double> v = seconds;
    const auto k = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
    std::ranges::nth_element(v, v.begin() + static_cast<std::ptrdiff_t>(k));
    return 1e6 * v[k];
  };
  CHECK(l.count == static_cast<std::int64_t>(seconds.size()));
  CHECK(l.max == 1e6 * *std::ranges::max_element(seconds));
  CHECK(std::abs(l.p50 - exact(0.5)) <= exact(0.5) / 128 + 1e-3);
  CHECK(std::abs(l.p99 - exact(0.99)) <= exact(0.99) / 128 + 1e-3);
  runtime::LatencyHistogram small;
  for (double ns : {5.0, 7.0, 100.0}) small.add(ns * 1e-9);
  CHECK(small.summary().p50 == Approx(7e-3));  // below 128 ns every nanosecond has its own bucket
  // 131071 ns tops the bucket [130048, 131072): read as its middle, half a bucket (1/256) away at most.
  runtime::LatencyHistogram top;
  for (int i = 0; i < 3; ++i) top.add(131071e-9);
  top.add(1.0);
  CHECK(std::abs(top.summary().p50 - 131.071) <= 131.071 / 256);
  small.clear();
  CHECK(small.summary().count == 0);

  // An interval of 10^9 rows costs what one of 10 does: rewind online --report-every 1000000000 once
  // preallocated 16 GB for its latencies.
  const std::size_t before = test::heap_bytes();
  runtime::PrequentialScore score({"x"}, 1'000'000'000);
  CHECK(test::heap_bytes() - before < 1'000'000);
  for (int r = 0; r < 1000; ++r) score.time(1e-6 * (r + 1), 0, false, 0);
  CHECK_FALSE(score.interval_full());
  CHECK(score.take().predict.p99 == Approx(990).epsilon(1.0 / 128));
}

TEST_CASE("online: tokens are scored by their log loss and whether they were the most probable", "[online]") {
  runtime::PrequentialScore score({}, 3);
  const std::vector<double> p = {0.5, 0.25, 0.25};
  score.score_token(p, 0);  // the most probable: ln 2
  score.score_token(p, 2);  // ln 4
  score.time(0, 0, false, 0), score.time(0, 0, false, 0);
  score.score_token(p, 1);
  score.time(0, 0, false, 0);
  CHECK(score.interval_full());
  const runtime::PrequentialScore::Interval i = score.take();
  CHECK(i.tokens.count == 3);
  CHECK(i.tokens.log_loss == Approx((std::log(2.0) + 2 * std::log(4.0)) / 3));
  CHECK(i.tokens.accuracy == Approx(1.0 / 3));
  CHECK(i.columns.empty());
  score.score_token(p, 0);
  CHECK(score.take().tokens.count == 1);  // a new interval
  CHECK(score.total_tokens().count == 4);
  CHECK(score.total_tokens().accuracy == Approx(0.5));
  CHECK_THROWS_WITH(score.score_token(p, 3), Contains("token 3 for a prediction over 3 tokens"));
}

TEST_CASE("online: the row parser names the line and column of what it refuses", "[online][errors]") {
  runtime::RowParser parser("t, x ,y,reset", {"x", "y"}, {"x"}, {"t"}, "reset");
  runtime::ParsedRow row;
  parser.parse("2020-01-01, 1.5 ,2,1", 2, row);
  CHECK(row.inputs == std::vector<double>{1.5, 2});
  CHECK(row.targets == std::vector<double>{1.5});
  CHECK(row.keys == std::vector<std::string>{"2020-01-01"});
  CHECK(row.starts_sequence);
  CHECK_THROWS_WITH(parser.parse("a,1,2", 7, row), Contains("line 7: 3 values for 4 columns"));
  CHECK_THROWS_WITH(parser.parse("a,,2,0", 8, row), Contains("line 8, column 'x': the value is missing"));
  CHECK_THROWS_WITH(parser.parse("a,1,inf,0", 9, row),
                    Contains("line 9, column 'y': 'inf' is not a finite number"));
  CHECK_THROWS_WITH(parser.parse("a,\"1,2,0", 10, row), Contains("line 10: a quote is not closed"));
  CHECK_THROWS_WITH(runtime::RowParser("t,x", {"x", "z"}, {"x"}, {}, ""),
                    Contains("the stream has no column 'z' (its header: t, x)"));
}
