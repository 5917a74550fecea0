// The adaptive trainer: every update is the exact TBPTT gradient of the window it reports (an explicit
// unroll with stop_gradient written here), its k2 changes with the estimate, and a run saved and restored
// mid-way continues bitwise as an uninterrupted one.
#include <unistd.h>

#include <catch2/catch.hpp>

#include <filesystem>
#include <random>
#include <set>
#include "influence_balancing.hpp"
#include "trainer_fixtures.hpp"

#include "plugin_fixtures.hpp"
#include "rewind/autodiff/ops.hpp"
#include "rewind/trainers/analysis.hpp"
#include "rewind/trainers/checkpoint.hpp"
#include "rewind/trainers/loop.hpp"

using namespace rwd;
using autodiff::DType;
using autodiff::Tape;
using autodiff::Tensor;
using autodiff::Var;

using test::layer_values;
using test::random_tokens;

namespace {

models::ModelConfig config() {
  models::ModelConfig c;
  c.vocab_size = 4;
  c.input_size = 3;
  c.hidden_size = 5;
  c.dtype = DType::f64;
  c.init_range = 0.8;
  return c;
}

}  // namespace

TEST_CASE("adaptive: each update is the brute-force TBPTT gradient of the window it reports, k2 moves",
          "[trainers][adaptive]") {
  auto model = test::make_model("lstm", config(), true);
  // Dense random targets, no resets: every step has a loss, so the states are one forward pass.
  trainers::TokenData data(2, 60, 4);
  std::mt19937_64 rng(5);
  for (std::int64_t t = 0; t < 60; ++t)
    for (std::int64_t b = 0; b < 2; ++b)
      data.input(t, b) = static_cast<std::int32_t>(rng() % 4),
                    data.target(t, b) = static_cast<std::int32_t>(rng() % 4);
  std::vector<std::vector<Tensor>> S;
  {
    Tape tape(DType::f64);
    autodiff::NoGradGuard no_grad;
    models::ModelState state;
    model->begin(tape, model->initial_state(2), state);
    S.push_back(layer_values(state));
    for (std::int64_t t = 0; t < 60; ++t) {
      model->step(tape, data.step(t).tokens, state);
      S.push_back(layer_values(state));
    }
  }
  auto trainer = test::builtin_plugins().make_trainer("adaptive", {{"every", "1"},
                                                                   {"tolerance", "0.02"},
                                                                   {"k_min", "1"},
                                                                   {"k_max", "12"},
                                                                   {"k1", "1"},
                                                                   {"k_start", "1"},
                                                                   {"loss_steps", "2"}});
  Tape tape(DType::f64);
  trainer->begin(*model, data, tape);
  std::set<std::int64_t> seen;
  std::int64_t expected_first = 0;
  while (!trainer->done()) {
    const trainers::UpdateStats s = trainer->next(*model, data, tape);
    std::vector<Tensor> got;
    for (auto* p : model->parameters()) got.push_back(p->grad());
    INFO("update at " << s.first_step << ", k1 = " << s.k1 << ", k2 = " << s.k2);
    CHECK(s.first_step == expected_first);
    CHECK(s.end_step == std::min<std::int64_t>(s.first_step + s.k1, 60));
    const std::int64_t start = std::max<std::int64_t>(0, s.end_step - s.k2);
    CHECK(s.steps_recorded == s.end_step - start);
    seen.insert(s.k2);
    // The reference: unroll [start, end) from the forward state, cut, loss = mean over [first, end).
    for (auto* p : model->parameters()) p->zero_grad();
    Tape ref(DType::f64);
    models::ModelState state;
    model->begin(ref, S[static_cast<std::size_t>(start)], state);
    for (auto& layer : state)
      for (Var& v : layer) v = autodiff::stop_gradient(v);
    Var loss;
    const double count = 2.0 * static_cast<double>(s.end_step - s.first_step);
    for (std::int64_t t = start; t < s.end_step; ++t) {
      const Var y = model->step(ref, data.step(t).tokens, state);
      if (t < s.first_step) continue;
      const Var l = autodiff::softmax_cross_entropy(y, data.step(t).target_tokens, {.normalizer = count});
      loss = loss.valid() ? loss + l : l;
    }
    ref.backward(loss);
    CHECK(s.loss == Approx(loss.item()).epsilon(1e-12));
    const auto params = model->parameters();
    for (std::size_t p = 0; p < params.size(); ++p)
      for (std::int64_t e = 0; e < got[p].numel(); ++e)
        CHECK(got[p].get(e) == Approx(params[p]->grad().get(e)).epsilon(1e-10).margin(1e-14));
    expected_first = s.end_step;
  }
  CHECK(seen.size() >= 2);  // the estimate moved k2: the check above covered more than one window
}

TEST_CASE("adaptive: k2 = k + k1 - 1, so the first loss of an update is unrolled the suggested k steps too",
          "[trainers][adaptive]") {
  // The first estimate runs on the initial state from step 0; every = 1000 keeps it the only one. k2 then
  // grows by at most k1 per update towards its target.
  models::ModelConfig c = config();
  c.vocab_size = 5;
  auto model = test::make_model("lstm", c, true);
  const auto data = random_tokens(2, 90, 13);
  constexpr std::int64_t k1 = 3, lags = 20, loss_steps = 4;
  constexpr double tolerance = 0.01;
  const trainers::HorizonAnalysis h = [&] {
    Tape tape(DType::f64);
    return trainers::estimate_horizon(*model, trainers::SegmentView(*data, 0, 2 * lags),
                                      model->initial_state(data->batch()), lags, tolerance, loss_steps, tape);
  }();
  INFO("suggested k = " << h.suggested_k);
  REQUIRE(h.suggested_k >= 2);
  REQUIRE(h.suggested_k + k1 - 1 <= 30);
  auto trainer =
      test::builtin_plugins().make_trainer("adaptive", {{"every", "1000"},
                                                        {"tolerance", "0.01"},
                                                        {"k_min", "3"},
                                                        {"k_max", "30"},
                                                        {"k1", std::to_string(k1)},
                                                        {"lags", std::to_string(lags)},
                                                        {"loss_steps", std::to_string(loss_steps)}});
  Tape tape(DType::f64);
  trainer->begin(*model, *data, tape);
  std::int64_t last_k2 = 0;
  while (!trainer->done()) last_k2 = trainer->next(*model, *data, tape).k2;
  CHECK(last_k2 == h.suggested_k + k1 - 1);
}

TEST_CASE("adaptive: options are checked by name", "[trainers][adaptive]") {
  using Catch::Matchers::Contains;
  const auto& r = test::builtin_plugins();
  CHECK_THROWS_WITH(r.make_trainer("adaptive", {{"tolerance", "1"}}), Contains("tolerance"));
  CHECK_THROWS_WITH(r.make_trainer("adaptive", {{"tolerance", "0"}}), Contains("tolerance"));
  CHECK_THROWS_WITH(r.make_trainer("adaptive", {{"k_min", "9"}, {"k_max", "4"}}), Contains("k_min <= k_max"));
  CHECK_THROWS_WITH(r.make_trainer("adaptive", {{"k1", "5"}, {"k_min", "2"}}), Contains("k1"));
  CHECK_THROWS_WITH(r.make_trainer("adaptive", {{"every", "0"}}), Contains("every"));
}

TEST_CASE("adaptive and artbp: a run restored from a checkpoint mid-pass continues bitwise",
          "[trainers][adaptive][artbp]") {
  const auto data = trainers::recall_task(6, 4, 3, 12, 9);
  const std::string name = GENERATE(as<std::string>(), "adaptive", "artbp");
  INFO(name);
  using Options = std::map<std::string, std::string>;
  const Options options = name == "adaptive"
                              ? Options{{"every", "3"}, {"tolerance", "0.05"}, {"k_min", "2"},
                                        {"k_max", "9"}, {"k1", "2"},           {"loss_steps", "2"}}
                              : Options{{"c", "0.3"}, {"seed", "4"}};
  const auto dir =
      std::filesystem::temp_directory_path() / ("rewind_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto file = dir / "checkpoint.safetensors";
  auto run = [&](std::int64_t updates, bool save, bool restore) {
    auto model = test::make_model("gru", config(), true);
    auto trainer = test::builtin_plugins().make_trainer(name, options);
    trainers::Optimizer optimizer({.kind = "adam", .lr = 0.05});
    trainers::Loop loop(*model, *trainer, optimizer,
                        [&](std::int64_t) -> const trainers::Dataset& { return *data; },
                        {.max_updates = updates});
    if (restore) {
      trainer->begin(*model, *data, loop.tape());
      loop.resume(trainers::restore_checkpoint(file, *model, optimizer, *trainer));
    }
    std::set<std::int64_t> k2s;
    loop.run([&](const trainers::UpdateReport& r) {
      k2s.insert(r.stats.k2);
      return true;
    });
    if (save) trainers::save_checkpoint(file, *model, optimizer, *trainer, loop.position(), {});
    std::vector<Tensor> values;
    for (auto* p : model->parameters()) values.push_back(p->value());
    return std::pair{values, k2s};
  };
  const auto [straight, k2s] = run(60, false, false);
  run(31, true, false);  // in a later pass than the first: the pass count matters for artbp
  const auto [resumed, unused] = run(60, false, true);
  std::filesystem::remove_all(dir);
  CHECK(k2s.size() >= 2);
  for (std::size_t p = 0; p < straight.size(); ++p)
    for (std::int64_t e = 0; e < straight[p].numel(); ++e) CHECK(resumed[p].get(e) == straight[p].get(e));
}

namespace {

// A tiny GRU in f64 with long memory (truncation visibly biases its gradient) and 12 steps of random tokens
// in 2 streams: where the randomised trainers' means are checked against the exact gradient.
struct LongMemory {
  static constexpr std::int64_t steps = 12;
  std::unique_ptr<models::Model> model;
  trainers::TokenData data{2, steps, 4};
  std::vector<Tensor> start;
  LongMemory() {
    models::ModelConfig c = config();
    c.hidden_size = 3;
    c.init_range = 1.2;
    model = test::make_model("gru", c, true);
    std::mt19937_64 rng(21);
    for (std::int64_t t = 0; t < steps; ++t)
      for (std::int64_t b = 0; b < 2; ++b)
        data.input(t, b) = static_cast<std::int32_t>(rng() % 4),
                      data.target(t, b) = static_cast<std::int32_t>(rng() % 4);
    start = model->initial_state(2);
  }
};

std::vector<double> flat(const std::vector<Tensor>& g) {
  std::vector<double> out;
  for (const Tensor& t : g)
    for (std::int64_t e = 0; e < t.numel(); ++e) out.push_back(t.get(e));
  return out;
}

}  // namespace

TEST_CASE("artbp: the mean of its pass gradient over seeds is the full gradient, truncated's is not",
          "[trainers][artbp]") {
  // Tiny GRU, f64, one pass of 12 steps from a non-zero state. The full gradient comes from the full trainer
  // (itself checked against an explicit unroll in test_trainers.cpp); each ARTBP pass gradient sums its
  // updates weighted by their share of the targets (pass_gradient).
  constexpr std::int64_t seeds = 800;
  const LongMemory fixture;
  constexpr std::int64_t T = LongMemory::steps;
  auto& [model, data, start] = fixture;
  Tape tape(DType::f64);
  auto full = test::builtin_plugins().make_trainer("full", {});
  const std::vector<double> g = flat(trainers::pass_gradient(*model, *full, data, start, tape));
  std::vector<double> mean(g.size(), 0.0), squares(g.size(), 0.0);
  double mean_length = 0;
  for (std::int64_t seed = 1; seed <= seeds; ++seed) {
    auto artbp =
        test::builtin_plugins().make_trainer("artbp", {{"c", "0.3"}, {"seed", std::to_string(seed)}});
    trainers::PassGradientStats stats;
    const std::vector<double> x = flat(trainers::pass_gradient(*model, *artbp, data, start, tape, &stats));
    mean_length += static_cast<double>(T) / static_cast<double>(stats.updates) / seeds;
    for (std::size_t i = 0; i < g.size(); ++i) mean[i] += x[i] / seeds, squares[i] += x[i] * x[i] / seeds;
  }
  // E ||mean - g||^2 = sum of the variances / n =: sigma^2. Over the ~60 gradient elements the norm of the
  // error concentrates near sigma, so 3 sigma is a wide margin for the unbiased estimator.
  double variance = 0, error = 0, norm = 0;
  for (std::size_t i = 0; i < g.size(); ++i) {
    variance += (squares[i] - mean[i] * mean[i]) / (seeds - 1);
    error += (mean[i] - g[i]) * (mean[i] - g[i]);
    norm += g[i] * g[i];
  }
  const double tolerance = 3 * std::sqrt(variance);
  INFO("||mean - g|| = " << std::sqrt(error) << ", tolerance " << tolerance << ", ||g|| = " << std::sqrt(norm)
                         << ", mean update length " << mean_length);
  CHECK(std::sqrt(error) <= tolerance);
  CHECK(tolerance < 0.05 * std::sqrt(norm));  // the check is tight enough to mean something
  // Truncated BPTT with windows as long as ARTBP's on average is biased by far more than that tolerance.
  const auto k = std::to_string(std::max<std::int64_t>(1, std::llround(mean_length)));
  auto truncated = test::builtin_plugins().make_trainer("truncated", {{"k", k}});
  const std::vector<double> gk = flat(trainers::pass_gradient(*model, *truncated, data, start, tape));
  double bias = 0;
  for (std::size_t i = 0; i < g.size(); ++i) bias += (gk[i] - g[i]) * (gk[i] - g[i]);
  CHECK(std::sqrt(bias) > 3 * tolerance);
}

TEST_CASE("artbp: the same seed repeats, another differs, options are checked", "[trainers][artbp]") {
  auto model = test::make_model("gru", config(), true);
  const auto data = trainers::recall_task(5, 4, 2, 8, 3);
  Tape tape(DType::f64);
  auto ends = [&](const std::string& seed) {
    auto t = test::builtin_plugins().make_trainer("artbp", {{"c", "0.4"}, {"seed", seed}, {"k_min", "2"}});
    t->begin(*model, *data, tape);
    std::vector<std::int64_t> out;
    while (!t->done()) {
      const auto s = t->next(*model, *data, tape);
      CHECK(s.end_step - s.first_step >= std::min<std::int64_t>(2, data->steps() - s.first_step));
      out.push_back(s.end_step);
    }
    return out;
  };
  CHECK(ends("7") == ends("7"));
  CHECK(ends("7") != ends("8"));
  using Catch::Matchers::Contains;
  CHECK_THROWS_WITH(test::builtin_plugins().make_trainer("artbp", {{"c", "1"}}), Contains("c,"));
  CHECK_THROWS_WITH(test::builtin_plugins().make_trainer("artbp", {{"k_min", "0"}}), Contains("k_min"));
}

TEST_CASE("adaptive: a memory budget caps k2 by the bytes per step it measured", "[trainers][adaptive]") {
  auto model = test::make_model("lstm", config(), true);
  const auto data = trainers::recall_task(8, 4, 2, 6, 2);
  auto k2s = [&](const std::string& budget) {
    auto trainer = test::builtin_plugins().make_trainer("adaptive", {{"every", "1"},
                                                                     {"tolerance", "0.001"},
                                                                     {"k_min", "2"},
                                                                     {"k_max", "12"},
                                                                     {"k1", "2"},
                                                                     {"memory_budget", budget}});
    Tape tape(DType::f64);
    trainer->begin(*model, *data, tape);
    std::set<std::int64_t> seen;
    while (!trainer->done()) seen.insert(trainer->next(*model, *data, tape).k2);
    return seen;
  };
  CHECK(k2s("1") == std::set<std::int64_t>{2});  // one byte: never more than k_min
  CHECK(*k2s("0").rbegin() > 2);                 // no budget: the estimate raises k2
}

TEST_CASE("artbp: every target weighs the same in a step whatever its update's length, with accumulation too",
          "[trainers][artbp][accumulate]") {
  // An update's gradient is its loss sum over the mean count of targets per update, c = 0.25 and k_min = 2:
  // (2 - 1 + 4) steps x the pass's targets per step. The loop accumulating two updates weighs each by that
  // normalizer, so its step is the two loss sums over the two normalizers, as one longer update would be.
  const auto data = random_tokens(2, 30, 9);
  const std::map<std::string, std::string> options{{"c", "0.25"}, {"k_min", "2"}, {"seed", "4"}};
  models::ModelConfig c = config();
  c.vocab_size = 5;
  auto model = test::make_model("gru", c, true);
  auto reference = test::make_model("gru", c, true);
  const double per_update =
      static_cast<double>(trainers::count_targets(*data, 0, 30)) / 30.0 * (2 - 1 + 1 / 0.25);
  std::vector<std::vector<Tensor>> sums;  // each update's loss-sum gradient, at the initial parameters
  std::vector<trainers::UpdateStats> stats;
  {
    auto trainer = test::builtin_plugins().make_trainer("artbp", options);
    Tape tape(DType::f64);
    trainer->begin(*reference, *data, tape);
    for (int u = 0; u < 2; ++u) {
      stats.push_back(trainer->next(*reference, *data, tape));
      CHECK(stats.back().normalizer == Approx(per_update).epsilon(1e-15));
      sums.emplace_back();
      for (auto* p : reference->parameters()) {
        sums.back().push_back(p->grad());
        for (std::int64_t e = 0; e < p->grad().numel(); ++e)
          sums.back().back().set(e, p->grad().get(e) * per_update);
      }
    }
  }
  REQUIRE(stats[0].end_step - stats[0].first_step != stats[1].end_step - stats[1].first_step);
  auto trainer = test::builtin_plugins().make_trainer("artbp", options);
  trainers::Optimizer sgd({.kind = "sgd", .lr = 1.0});
  trainers::Loop loop(*model, *trainer, sgd, [&](std::int64_t) -> const trainers::Dataset& { return *data; },
                      {.accumulate = 2, .max_updates = 1});
  std::vector<Tensor> before;
  for (auto* p : model->parameters()) before.push_back(p->value());
  loop.run([&](const trainers::UpdateReport& r) {
    CHECK(r.stats.loss_count == stats[0].loss_count + stats[1].loss_count);
    CHECK(r.stats.loss == Approx((stats[0].loss * static_cast<double>(stats[0].loss_count) +
                                  stats[1].loss * static_cast<double>(stats[1].loss_count)) /
                                 static_cast<double>(r.stats.loss_count))
                              .epsilon(1e-12));
    return true;
  });
  const auto params = model->parameters();
  for (std::size_t i = 0; i < params.size(); ++i)
    for (std::int64_t e = 0; e < before[i].numel(); ++e)
      CHECK(params[i]->value().get(e) ==
            Approx(before[i].get(e) - (sums[0][i].get(e) + sums[1][i].get(e)) / (2 * per_update))
                .epsilon(1e-10)
                .margin(1e-13));
}

TEST_CASE("artbp: on influence balancing it converges to theta star, truncated BPTT as short runs away",
          "[trainers][artbp]") {
  // tests/influence_balancing.hpp: theta* = -1/4, and every truncation shorter than 2p = 6 steps has the
  // opposite sign of the full derivative. ARTBP at c = 0.2 truncates every 5 steps on average.
  const test::influence::Task task;
  const double lr = 0.002;
  for (const char* seed : {"1", "2", "3"}) {
    const auto points = test::influence::train(task, "artbp", {{"c", "0.2"}, {"seed", seed}}, lr, 4000, 50);
    REQUIRE(points.size() == 80);
    double late = 0;  // theta averaged over the second half: SGD on a noisy gradient hovers around its target
    for (std::size_t i = 40; i < 80; ++i) late += points[i].theta / 40;
    INFO("seed " << seed << ": mean theta over the last 2000 updates " << late);
    // Within 1%: with each update's loss the mean over its own targets, it settled 1-3% short
    // (docs/trainers.md).
    CHECK(std::abs(late - task.theta_star()) < 0.01 * std::abs(task.theta_star()));
  }
  for (const std::map<std::string, std::string>& options :
       {std::map<std::string, std::string>{{"k", "5"}}, {{"k1", "1"}, {"k2", "5"}}}) {
    const auto points = test::influence::train(task, "truncated", options, lr, 4000, 50);
    INFO("truncated(" << options.begin()->second << "): theta " << points.back().theta << " after "
                      << points.back().update << " updates");
    CHECK(points.back().theta > 100 * std::abs(task.theta_star()));  // the wrong sign, and stopped early
    CHECK(points.size() < 80);
  }
  // A window of n steps holds every addition still in the register: exact, so truncated converges too.
  const auto exact = test::influence::train(task, "truncated", {{"k1", "1"}, {"k2", "10"}}, lr, 1000, 50);
  CHECK(exact.back().theta == Approx(task.theta_star()).epsilon(1e-9));
}

TEST_CASE("rtrl and uoro: on influence balancing they converge to theta star, online, without truncation",
          "[trainers][rtrl][uoro]") {
  // An update every step, as truncated(1) and (1, 5), which run away above (and here). UORO's noise needs a
  // smaller rate than ARTBP's 0.002, at which it runs away too
  // (bench/results/influence_balancing_online.txt).
  const test::influence::Task task;
  const double lr = 0.0005;
  auto late_theta = [&](const std::string& trainer, const std::map<std::string, std::string>& options) {
    const auto points = test::influence::train(task, trainer, options, lr, 8000, 100);
    REQUIRE(points.size() == 80);
    double late = 0;
    for (std::size_t i = 40; i < 80; ++i) late += points[i].theta / 40;
    return late;
  };
  CHECK(std::abs(late_theta("rtrl", {}) - task.theta_star()) < 0.01 * std::abs(task.theta_star()));
  for (const char* seed : {"1", "2", "3"}) {
    INFO("uoro, seed " << seed);
    CHECK(std::abs(late_theta("uoro", {{"seed", seed}}) - task.theta_star()) <
          0.01 * std::abs(task.theta_star()));
  }
  const auto truncated = test::influence::train(task, "truncated", {{"k", "8"}}, lr, 8000, 100);
  CHECK(truncated.back().theta > 100 * std::abs(task.theta_star()));
}

TEST_CASE("uoro: the mean of its pass gradient over seeds is RTRL's, which is the full gradient",
          "[trainers][uoro]") {
  // The artbp test's tiny GRU: RTRL's pass gradient (exact online) equals full BPTT's at fixed parameters,
  // and UORO's rank-one estimate, averaged over seeds, must reach it within its standard error.
  constexpr std::int64_t seeds = 1000;
  const LongMemory fixture;
  auto& [model, data, start] = fixture;
  Tape tape(DType::f64);
  auto full = test::builtin_plugins().make_trainer("full", {});
  const std::vector<double> g = flat(trainers::pass_gradient(*model, *full, data, start, tape));
  auto rtrl = test::builtin_plugins().make_trainer("rtrl", {{"k", "4"}});
  const std::vector<double> exact = flat(trainers::pass_gradient(*model, *rtrl, data, start, tape));
  double rtrl_error = 0, norm = 0;
  for (std::size_t i = 0; i < g.size(); ++i)
    rtrl_error = std::max(rtrl_error, std::abs(exact[i] - g[i])), norm += g[i] * g[i];
  CHECK(rtrl_error <= 1e-12 * std::sqrt(norm));
  std::vector<double> mean(g.size(), 0.0), squares(g.size(), 0.0);
  for (std::int64_t seed = 1; seed <= seeds; ++seed) {
    auto uoro = test::builtin_plugins().make_trainer("uoro", {{"k", "4"}, {"seed", std::to_string(seed)}});
    const std::vector<double> x = flat(trainers::pass_gradient(*model, *uoro, data, start, tape));
    for (std::size_t i = 0; i < g.size(); ++i) mean[i] += x[i] / seeds, squares[i] += x[i] * x[i] / seeds;
  }
  double variance = 0, error = 0;
  for (std::size_t i = 0; i < g.size(); ++i) {
    variance += (squares[i] - mean[i] * mean[i]) / (seeds - 1);
    error += (mean[i] - exact[i]) * (mean[i] - exact[i]);
  }
  const double tolerance = 3 * std::sqrt(variance);
  INFO("||mean - g|| = " << std::sqrt(error) << ", tolerance " << tolerance
                         << ", ||g|| = " << std::sqrt(norm));
  CHECK(std::sqrt(error) <= tolerance);
  CHECK(tolerance < 0.15 * std::sqrt(norm));  // tight enough to mean something
}
