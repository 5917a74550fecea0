// analyze_truncation and analyze_horizon against references written here from the public autodiff API:
// explicit unrolls with stop_gradient at each update's start (not the trainers' record_window), forward
// states from Model::step, gradients w.r.t. a state from an unroll whose starting state is a leaf.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include "trainer_fixtures.hpp"

#include "plugin_fixtures.hpp"
#include "rewind/autodiff/ops.hpp"
#include "rewind/trainers/analysis.hpp"

using namespace rwd;
using autodiff::DType;
using autodiff::Tape;
using autodiff::Tensor;
using autodiff::Var;

using test::forward_states;
using test::layer_values;
using test::random_tokens;

namespace {

models::ModelConfig f64_config(int layers) {
  models::ModelConfig c;
  c.vocab_size = 5;
  c.input_size = 3;
  c.hidden_size = 4;
  c.layers = layers;
  c.dtype = DType::f64;
  c.init_range = 0.6;
  return c;
}

std::int64_t targets_in(const trainers::Dataset& data, std::int64_t begin, std::int64_t end) {
  std::int64_t n = 0;
  for (std::int64_t t = begin; t < end; ++t)
    for (std::int32_t target : data.step(t).target_tokens) n += target != trainers::no_target;
  return n;
}

// TBPTT(k1, k2) over steps [from, from + T) as the definition states it: update u's loss covers
// [from + u k1, e), unrolled from S_{max(from, e - k2)} cut with stop_gradient; every loss divided by the
// segment's target count, so the gradients, accumulated without zeroing, sum to g_k.
std::vector<Tensor> reference_gradient(models::Model& model, const trainers::Dataset& data,
                                       const std::vector<std::vector<Tensor>>& S, std::int64_t from,
                                       std::int64_t T, std::int64_t k1, std::int64_t k2) {
  for (auto* p : model.parameters()) p->zero_grad();
  const auto total = static_cast<double>(targets_in(data, from, from + T));
  for (std::int64_t first = from; first < from + T; first += k1) {
    const std::int64_t end = std::min(first + k1, from + T), start = std::max(from, end - k2);
    if (targets_in(data, first, end) == 0) continue;
    Tape tape(DType::f64);
    models::ModelState state;
    model.begin(tape, S[static_cast<std::size_t>(start)], state);
    for (auto& layer : state)
      for (Var& v : layer) v = autodiff::stop_gradient(v);
    Var loss;
    for (std::int64_t t = start; t < end; ++t) {
      const Var y = model.step(tape, data.step(t).tokens, state);
      if (t < first) continue;
      const Var l = autodiff::softmax_cross_entropy(
          y, data.step(t).target_tokens, {.ignore_index = trainers::no_target, .normalizer = total});
      loss = loss.valid() ? loss + l : l;
    }
    tape.backward(loss);
  }
  std::vector<Tensor> g;
  for (auto* p : model.parameters()) g.push_back(p->grad());
  return g;
}

struct Figures {
  double cosine, error, ratio;
};
Figures figures(const std::vector<const Tensor*>& a, const std::vector<const Tensor*>& b) {
  double dot = 0, na = 0, nb = 0, nd = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    for (std::int64_t e = 0; e < a[i]->numel(); ++e) {
      dot += a[i]->get(e) * b[i]->get(e);
      na += a[i]->get(e) * a[i]->get(e);
      nb += b[i]->get(e) * b[i]->get(e);
      nd += (a[i]->get(e) - b[i]->get(e)) * (a[i]->get(e) - b[i]->get(e));
    }
  return {dot / std::sqrt(na * nb), std::sqrt(nd / nb), std::sqrt(na / nb)};
}

trainers::TrainerMaker maker() {
  return [](const std::string& name, const std::map<std::string, std::string>& options) {
    return test::builtin_plugins().make_trainer(name, options);
  };
}

}  // namespace

TEST_CASE("analyze truncation: k >= T is exact and every (k1, k2) equals a brute-force unroll",
          "[analysis]") {
  constexpr std::int64_t T = 9, N = 3;
  for (const char* cell : {"lstm", "gru"})
    for (int layers : {1, 2}) {
      INFO(cell << ", " << layers << " layer(s)");
      auto model = test::make_model(cell, f64_config(layers), true);
      const auto data =
          random_tokens(3, T * N + 2, 7);  // more steps than analysed: the view must stop at N T
      const auto S = forward_states(*model, *data);
      const std::vector<trainers::TruncationSetting> settings = {{T, T}, {1, 1}, {3, 3},
                                                                 {2, 5}, {4, 7}, {3, T}};
      const trainers::TruncationAnalysis a =
          trainers::analyze_truncation(*model, *data, T, N, settings, maker());
      REQUIRE(a.segments_used == N);
      REQUIRE(a.parameters.size() == model->parameters().size());
      for (const auto& seg : a.results[0].segments) {
        CHECK(std::abs(seg.overall.cosine - 1) <= 1e-12);
        CHECK(seg.overall.relative_error <= 1e-12);
        CHECK(std::abs(seg.overall.norm_ratio - 1) <= 1e-12);
        for (const auto& p : seg.parameters) CHECK(p.relative_error <= 1e-12);
      }
      for (std::size_t i = 0; i < settings.size(); ++i) {
        const std::int64_t k1 = settings[i].k1, k2 = settings[i].k2;
        INFO("k1 = " << k1 << ", k2 = " << k2);
        for (std::int64_t seg = 0; seg < N; ++seg) {
          const auto g = reference_gradient(*model, *data, S, seg * T, T, T, T);
          const auto gk = reference_gradient(*model, *data, S, seg * T, T, k1, k2);
          std::vector<const Tensor*> all, all_k;
          for (std::size_t p = 0; p < g.size(); ++p) all.push_back(&g[p]), all_k.push_back(&gk[p]);
          const Figures want = figures(all_k, all);
          const auto& got = a.results[i].segments[static_cast<std::size_t>(seg)];
          CHECK(got.overall.cosine == Approx(want.cosine).epsilon(1e-10));
          CHECK(got.overall.relative_error == Approx(want.error).epsilon(1e-9).margin(1e-12));
          CHECK(got.overall.norm_ratio == Approx(want.ratio).epsilon(1e-10));
          for (std::size_t p = 0; p < g.size(); ++p) {
            const Figures one = figures({&gk[p]}, {&g[p]});
            CHECK(got.parameters[p].relative_error == Approx(one.error).epsilon(1e-9).margin(1e-12));
          }
          // The short windows lose part of the gradient: the analysis must see it, not report 0.
          if (k2 < 3) CHECK(want.error > 1e-3);
        }
      }
    }
}

TEST_CASE("analyze truncation: rows for other trainers, RTRL exact and UORO over seeds", "[analysis][rtrl]") {
  constexpr std::int64_t T = 6, N = 2;
  auto model = test::make_model("gru", f64_config(1), true);
  const auto data = random_tokens(3, T * N, 5);
  const std::vector<trainers::TruncationSetting> settings = {{2, 2}, {"rtrl", 1}, {"uoro", 3}};
  const trainers::TruncationAnalysis a = trainers::analyze_truncation(*model, *data, T, N, settings, maker());
  CHECK(a.results[0].segments.size() == N);
  CHECK(a.results[0].segments[0].overall.relative_error > 1e-3);  // truncated(2) is biased here
  REQUIRE(a.results[1].segments.size() == N);
  for (const auto& seg : a.results[1].segments) CHECK(seg.overall.relative_error <= 1e-12);
  CHECK(a.results[2].segments.size() == N * 3);  // each segment under each seed
  CHECK(a.results[2].setting.label() == "uoro");
}

TEST_CASE("pass_gradient of the truncated trainer is the sum of its updates' brute-force gradients",
          "[analysis]") {
  constexpr std::int64_t T = 10;
  auto model = test::make_model("lstm", f64_config(1), true);
  const auto data = random_tokens(2, 2 * T, 3);
  const auto S = forward_states(*model, *data);
  const trainers::SegmentView second(*data, T, T);
  Tape tape(DType::f64);
  for (auto [k1, k2] : {std::pair{2, 2}, {3, 6}, {10, 10}}) {
    auto trainer = test::builtin_plugins().make_trainer(
        "truncated", {{"k1", std::to_string(k1)}, {"k2", std::to_string(k2)}});
    const auto got = trainers::pass_gradient(*model, *trainer, second, S[T], tape);
    const auto want = reference_gradient(*model, *data, S, T, T, k1, k2);
    for (std::size_t p = 0; p < got.size(); ++p)
      for (std::int64_t e = 0; e < got[p].numel(); ++e)
        CHECK(got[p].get(e) == Approx(want[p].get(e)).epsilon(1e-10).margin(1e-14));
  }
  // The state after a segment is the forward pass's.
  const auto end = trainers::forward_state(*model, second, S[T], tape);
  for (std::size_t i = 0; i < end.size(); ++i)
    for (std::int64_t e = 0; e < end[i].numel(); ++e)
      CHECK(end[i].get(e) == Approx(S[2 * T][i].get(e)).epsilon(1e-12));
}

TEST_CASE("analyze truncation refuses bad settings by option name", "[analysis]") {
  auto model = test::make_model("gru", f64_config(1), true);
  const auto data = random_tokens(2, 20, 1);
  using Catch::Matchers::Contains;
  auto run = [&](std::int64_t T, std::int64_t N, std::vector<trainers::TruncationSetting> s) {
    trainers::analyze_truncation(*model, *data, T, N, s, maker());
  };
  CHECK_THROWS_WITH(run(10, 1, {}), Contains("--k"));
  CHECK_THROWS_WITH(run(10, 1, {{0, 0}}), Contains("positive"));
  CHECK_THROWS_WITH(run(10, 1, {{5, 11}}), Contains("exceeds --steps"));
  CHECK_THROWS_WITH(run(10, 1, {{5, 3}}), Contains("k1 <= k2"));
  CHECK_THROWS_WITH(run(10, 3, {{5, 5}}), Contains("--segments"));
  CHECK_THROWS_WITH(run(0, 1, {{1, 1}}), Contains("--steps"));
}

TEST_CASE("analyze horizon: each lag's norm equals dL_t / dS_s from an explicit unroll, and the fit",
          "[analysis]") {
  constexpr std::int64_t T = 12, J = 6;
  auto model = test::make_model("lstm", f64_config(2), true);
  const auto data = random_tokens(3, T, 11);
  const auto S = forward_states(*model, *data);
  const trainers::HorizonAnalysis h = trainers::analyze_horizon(*model, *data, T, 1, J, 0.1, 3);
  REQUIRE(h.loss_steps == 3);
  // The reference: for each of the 3 latest loss steps t, one unroll of steps [s, t] from S_s as a leaf
  // that takes a gradient (lag 0: no step, the head on the state after step t); the loss at t summed over
  // rows; the norm per counted row over every state tensor.
  std::vector<double> sum(J + 1, 0.0);
  std::vector<std::int64_t> count(J + 1, 0);
  std::int64_t measured = 0;
  for (std::int64_t t = T - 1; t >= 0 && measured < 3; --t) {
    if (targets_in(*data, t, t + 1) == 0) continue;
    ++measured;
    for (std::int64_t j = 0; j <= J && t - j + 1 >= 0; ++j) {
      const std::int64_t s = t - j + 1;
      Tape tape(DType::f64);
      models::ModelState state;
      std::vector<Var> leaves;
      for (const Tensor& v : S[static_cast<std::size_t>(s)]) leaves.push_back(tape.input(v, true));
      // Rebuild the per-layer state from the leaves (h, c per layer for an LSTM).
      model->begin(tape, S[static_cast<std::size_t>(s)], state);
      std::size_t k = 0;
      for (auto& layer : state)
        for (Var& v : layer) v = leaves[k++];
      Var y;
      for (std::int64_t u = s; u <= t; ++u) y = model->step(tape, data->step(u).tokens, state);
      if (j == 0) y = model->head(tape, model->cell(1).output(state.back()));
      tape.backward(autodiff::softmax_cross_entropy(y, data->step(t).target_tokens,
                                                    {.ignore_index = trainers::no_target, .normalizer = 1}));
      for (std::int64_t b = 0; b < 3; ++b) {
        if (data->step(t).target_tokens[static_cast<std::size_t>(b)] == trainers::no_target) continue;
        double squares = 0;
        for (const Var& leaf : leaves) {
          const Tensor g = tape.grad(leaf);
          for (std::int64_t c = 0; c < g.shape().cols; ++c)
            squares += std::pow(g.get(b * g.shape().cols + c), 2);
        }
        sum[static_cast<std::size_t>(j)] += std::sqrt(squares);
        ++count[static_cast<std::size_t>(j)];
      }
    }
  }
  std::vector<double> mean(J + 1);
  for (std::size_t j = 0; j <= J; ++j) {
    INFO("lag " << j);
    REQUIRE(h.samples[j] == count[j]);
    mean[j] = sum[j] / static_cast<double>(count[j]);
    CHECK(h.mean_norm[j] == Approx(mean[j]).epsilon(1e-10));
  }
  // Least squares of log norm on the lags 1..J, written out.
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (std::size_t j = 1; j <= J; ++j) {
    const double x = static_cast<double>(j), y = std::log(mean[j]);
    sx += x, sy += y, sxx += x * x, sxy += x * y;
  }
  const double slope = (J * sxy - sx * sy) / (J * sxx - sx * sx);
  CHECK(h.lambda == Approx(std::exp(slope)).epsilon(1e-10));
  // A 1-step unroll keeps lag 0: its bias is the share of lags 1.. in the whole, below 1.
  REQUIRE(h.bias.size() == J);
  const double tail = mean[J] * h.lambda / (1 - h.lambda);
  double beyond_0 = tail;
  for (std::size_t j = 1; j <= J; ++j) beyond_0 += mean[j];
  CHECK(h.bias.front() == Approx(beyond_0 / (beyond_0 + mean[0])).epsilon(1e-10));
  CHECK(h.bias.front() < 1);
  for (std::size_t k = 1; k < h.bias.size(); ++k) CHECK(h.bias[k] < h.bias[k - 1]);
}

TEST_CASE("the truncation bias of a geometric curve is lambda^k, and the suggestion its bound",
          "[analysis]") {
  // phi_j = 0.8^j exactly, lags j = 0..10: a k-step unroll keeps lags 0..k - 1, and the fraction it drops is
  // 0.8^k whatever J is (Aicher, Foti & Fox 2019: the tail beyond the truncation over the whole, lag 0 in
  // it).
  std::vector<double> norms;
  for (int j = 0; j <= 10; ++j) norms.push_back(std::pow(0.8, j));
  const std::vector<double> bias = trainers::truncation_bias(norms, 0.8);
  REQUIRE(bias.size() == 10);
  for (std::size_t k = 1; k <= bias.size(); ++k)
    CHECK(bias[k - 1] == Approx(std::pow(0.8, k)).epsilon(1e-12));
  // Smallest k with 0.8^k <= 0.1: k >= log 0.1 / log 0.8 = 10.3, so k = 11 (beyond J = 10).
  CHECK(trainers::suggested_truncation(norms, 0.8, 0.1) == 11);
  CHECK(trainers::suggested_truncation(norms, 0.8, 0.5) == 4);  // 0.8^4 = 0.41, 0.8^3 = 0.51
  CHECK(trainers::suggested_truncation(norms, 1.0, 0.1) == -1);
  // Norms that end at zero (a reset cut every path further back) need no tail, whatever the fitted rate.
  const std::vector<double> cut = trainers::truncation_bias({1.0, 0.5, 0.0}, 1.5);
  REQUIRE(cut.size() == 2);
  CHECK(cut[0] == Approx(0.5 / 1.5));
  CHECK(cut[1] == 0.0);
  CHECK(trainers::suggested_truncation({1.0, 0.5, 0.0}, 1.5, 0.2) == 2);
  auto model = test::make_model("gru", f64_config(1), true);
  const auto data = random_tokens(2, 20, 1);
  using Catch::Matchers::Contains;
  CHECK_THROWS_WITH(trainers::analyze_horizon(*model, *data, 10, 1, 5, 1.0, 2), Contains("--tolerance"));
  CHECK_THROWS_WITH(trainers::analyze_horizon(*model, *data, 10, 1, 5, 0.0, 2), Contains("--tolerance"));
  CHECK_THROWS_WITH(trainers::analyze_horizon(*model, *data, 10, 1, 1, 0.1, 2), Contains("--lags"));
}

TEST_CASE("the horizon fit leaves out the zero norms past a reset", "[analysis]") {
  // recall:4 restarts every sequence with a reset: no path leads further back than its start.
  const auto data = trainers::synthetic_task("recall:4", 3, 40, 7);
  models::ModelConfig c = f64_config(1);
  c.vocab_size = data->vocab_size(), c.output_size = data->output_size();
  auto model = test::make_model("lstm", c, true);
  const trainers::HorizonAnalysis h = trainers::analyze_horizon(*model, *data, 40, 1, 8, 0.1, 4);
  double n = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
  int zeros = 0;
  for (std::size_t j = 1; j < h.mean_norm.size(); ++j) {
    if (h.mean_norm[j] == 0) {
      ++zeros;
      continue;
    }
    const double x = static_cast<double>(j), y = std::log(h.mean_norm[j]);
    n += 1, sx += x, sy += y, sxx += x * x, sxy += x * y;
  }
  REQUIRE(zeros > 0);
  REQUIRE(n >= 2);
  CHECK(std::isfinite(h.lambda));
  CHECK(h.lambda == Approx(std::exp((n * sxy - sx * sy) / (n * sxx - sx * sx))).epsilon(1e-12));
  // With the last lags at zero there is no tail: an unroll reaching past the reset has no bias.
  CHECK(h.bias.back() == 0);
}
