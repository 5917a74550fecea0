// Evaluation and sampling against references written in this file: one uninterrupted pass of Model::step
// over the whole dataset (no windows, no carried-state copies), with the loss, the count and the accuracy
// computed here from the logits; and sampling redone from the same logits and the same random draws.
#include <catch2/catch.hpp>
#include <cmath>

#include "helpers.hpp"
#include "plugin_fixtures.hpp"
#include "rewind/autodiff/ops.hpp"
#include "rewind/trainers/evaluate.hpp"

using namespace rwd;
using autodiff::DType;
using autodiff::Shape;
using autodiff::Tape;
using autodiff::Tensor;
using autodiff::Var;

namespace {

constexpr std::int64_t vocab = 5, batch = 3, steps = 13;

models::ModelConfig token_config(int layers) {
  models::ModelConfig c;
  c.vocab_size = vocab;
  c.input_size = 3;
  c.hidden_size = 4;
  c.layers = layers;
  c.dtype = DType::f64;
  c.init_range = 0.7;
  return c;
}

std::unique_ptr<trainers::TokenData> token_data() {
  auto data = std::make_unique<trainers::TokenData>(batch, steps, vocab);
  std::mt19937_64 rng(21);
  for (std::int64_t t = 0; t < steps; ++t)
    for (std::int64_t b = 0; b < batch; ++b) {
      data->input(t, b) = static_cast<std::int32_t>(rng() % vocab);
      data->target(t, b) =
          (t + 2 * b) % 5 == 0 ? trainers::no_target : static_cast<std::int32_t>(rng() % vocab);
    }
  data->set_reset(6, 1);  // row 1 starts a new sequence at step 6
  return data;
}

struct Expected {
  double loss = 0;
  std::int64_t count = 0, correct = 0;
};

// Multiplies the state rows that restart at step t by zero, as a reset means.
void apply_resets(Tape& tape, models::ModelState& state, const trainers::Step& s) {
  if (s.reset.empty()) return;
  for (models::State& layer : state)
    for (Var& v : layer) {
      Tensor keep(v.shape(), v.dtype());
      for (std::int64_t b = 0; b < keep.shape().rows; ++b)
        for (std::int64_t j = 0; j < keep.shape().cols; ++j)
          keep.set(b * keep.shape().cols + j, s.reset[static_cast<std::size_t>(b)] ? 0.0 : 1.0);
      v = v * tape.input(keep);
    }
}

// One pass from a zero state, one step at a time on one tape; cross-entropy by log-sum-exp, written here.
Expected by_steps(models::Model& model, const trainers::TokenData& data) {
  autodiff::NoGradGuard no_grad;
  Tape tape(DType::f64);
  models::ModelState state;
  model.begin(tape, model.initial_state(data.batch()), state);
  Expected e;
  double total = 0;
  for (std::int64_t t = 0; t < data.steps(); ++t) {
    const trainers::Step s = data.step(t);
    apply_resets(tape, state, s);
    const Tensor logits = model.step(tape, s.tokens, state).value();
    for (std::int64_t b = 0; b < data.batch(); ++b) {
      const std::int32_t target = s.target_tokens[static_cast<std::size_t>(b)];
      if (target == trainers::no_target) continue;
      double peak = -INFINITY, sum = 0;
      std::int64_t best = 0;
      for (std::int64_t c = 0; c < vocab; ++c) {
        if (logits.at(b, c) > peak) best = c;
        peak = std::max(peak, logits.at(b, c));
      }
      for (std::int64_t c = 0; c < vocab; ++c) sum += std::exp(logits.at(b, c) - peak);
      total += peak + std::log(sum) - logits.at(b, target);
      ++e.count;
      e.correct += best == target;
    }
  }
  e.loss = total / static_cast<double>(e.count);
  return e;
}

// The real-valued counterpart: mean squared error over the counted elements.
Expected by_steps(models::Model& model, const trainers::SeriesData& data) {
  autodiff::NoGradGuard no_grad;
  Tape tape(DType::f64);
  models::ModelState state;
  model.begin(tape, model.initial_state(data.batch()), state);
  Expected e;
  double total = 0;
  for (std::int64_t t = 0; t < data.steps(); ++t) {
    const trainers::Step s = data.step(t);
    apply_resets(tape, state, s);
    const Tensor y = model.step(tape, tape.input(*s.features), state).value();
    if (!s.has_loss) continue;
    for (std::int64_t b = 0; b < data.batch(); ++b) {
      if (!s.loss_rows.empty() && s.loss_rows[static_cast<std::size_t>(b)] == 0) continue;
      for (std::int64_t j = 0; j < y.shape().cols; ++j) {
        const double d = y.at(b, j) - s.target_values->at(b, j);
        total += d * d;
        ++e.count;
      }
    }
  }
  e.loss = total / static_cast<double>(e.count);
  return e;
}

}  // namespace

TEST_CASE("evaluation over any window length equals one uninterrupted pass", "[evaluate]") {
  const auto data = token_data();
  for (const char* cell : {"rnn", "gru", "lstm"})
    for (int layers : {1, 2}) {
      auto model = test::make_model(cell, token_config(layers), true);
      const Expected want = by_steps(*model, *data);
      REQUIRE(want.count > 0);
      REQUIRE(want.correct > 0);
      REQUIRE(want.correct < want.count);
      // 1: every step its own window; 4 does not divide 13; 13 and 100: one window.
      for (std::int64_t window : {1, 4, 13, 100}) {
        INFO(cell << ", " << layers << " layer(s), window " << window);
        const trainers::Evaluation got = trainers::evaluate(*model, *data, window);
        CHECK(got.loss == Approx(want.loss).epsilon(1e-12));
        CHECK(got.count == want.count);
        CHECK(got.correct == want.correct);
      }
    }
}

TEST_CASE("evaluation of real-valued data is the mean squared error over the counted elements",
          "[evaluate]") {
  trainers::SeriesData data(2, 9, 3, 2);
  std::uint64_t seed = 50;
  for (std::int64_t t = 0; t < 9; ++t) {
    data.features(t) = test::random_tensor(Shape::matrix(2, 3), DType::f64, seed++);
    data.targets(t) = test::random_tensor(Shape::matrix(2, 2), DType::f64, seed++);
  }
  data.set_has_loss(0, false);
  data.set_no_loss(4, 1);
  data.set_reset(5, 1);
  models::ModelConfig c;
  c.input_size = 3;
  c.output_size = 2;
  c.hidden_size = 4;
  c.layers = 2;
  c.dtype = DType::f64;
  c.init_range = 0.7;
  auto model = test::make_model("gru", c, true);
  const Expected want = by_steps(*model, data);
  CHECK(want.count == (8 * 2 - 1) * 2);
  for (std::int64_t window : {1, 2, 9}) {
    INFO("window " << window);
    const trainers::Evaluation got = trainers::evaluate(*model, data, window);
    CHECK(got.loss == Approx(want.loss).epsilon(1e-12));
    CHECK(got.count == want.count);
  }
}

namespace {

models::ModelConfig sample_config() {
  models::ModelConfig c = token_config(2);
  c.vocab_size = 6;
  c.hidden_size = 8;
  c.init_range = 1.0;  // logits far apart, so the temperature matters
  return c;
}

// The model's logits after each token, kept in one ModelState.
struct Stepper {
  models::Model& model;
  autodiff::NoGradGuard no_grad;
  Tape tape{DType::f64};
  models::ModelState state;
  explicit Stepper(models::Model& m) : model(m) { model.begin(tape, model.initial_state(1), state); }
  Tensor feed(std::int32_t token) {
    return model.step(tape, std::span<const std::int32_t>(&token, 1), state).value();
  }
};

}  // namespace

TEST_CASE("sampling near temperature 0 follows the argmax of the logits after the prime",
          "[evaluate][sample]") {
  for (const char* cell : {"gru", "lstm"}) {
    INFO(cell);
    auto model = test::make_model(cell, sample_config(), true);
    const std::vector<std::int32_t> prime = {3, 0, 5, 1, 4, 2};
    const double temperature = 1e-4;
    const std::int64_t length = 25;
    std::vector<std::int32_t> want;
    {
      Stepper s(*model);
      Tensor logits;
      for (std::int32_t token : prime) logits = s.feed(token);
      for (std::int64_t n = 0; n < length; ++n) {
        std::int32_t best = 0;
        for (std::int32_t c = 1; c < 6; ++c)
          if (logits.get(c) > logits.get(best)) best = c;
        // A margin of 40 temperatures: every other symbol has a probability below e^-40.
        for (std::int32_t c = 0; c < 6; ++c)
          if (c != best) REQUIRE(logits.get(best) - logits.get(c) > 40 * temperature);
        want.push_back(best);
        logits = s.feed(best);
      }
    }
    // The first generated symbol is not the prime's last, so feeding back the wrong one shows.
    REQUIRE(want[0] != prime.back());
    std::mt19937_64 rng(5);
    CHECK(trainers::sample(*model, prime, length, temperature, rng) == want);
  }
}

TEST_CASE("sampling with a fixed seed draws from softmax(logits / temperature)", "[evaluate][sample]") {
  auto model = test::make_model("lstm", sample_config(), true);
  const std::int64_t length = 40;
  for (double temperature : {0.5, 1.0, 2.0}) {
    INFO("temperature " << temperature);
    // A one-symbol prime: every random draw chooses a generated symbol.
    const std::int32_t first = 2;
    std::vector<std::int32_t> want;
    std::mt19937_64 reference_rng(77);
    {
      Stepper s(*model);
      Tensor logits = s.feed(first);
      std::vector<double> weights(6);
      for (std::int64_t n = 0; n < length; ++n) {
        double peak = -INFINITY;
        for (std::int64_t c = 0; c < 6; ++c) peak = std::max(peak, logits.get(c));
        for (std::int64_t c = 0; c < 6; ++c)
          weights[static_cast<std::size_t>(c)] = std::exp((logits.get(c) - peak) / temperature);
        const auto next = static_cast<std::int32_t>(
            std::discrete_distribution<std::size_t>(weights.begin(), weights.end())(reference_rng));
        want.push_back(next);
        logits = s.feed(next);
      }
    }
    // More than one distinct symbol, and not a constant repetition of the prime.
    CHECK(std::count(want.begin(), want.end(), want[0]) < length);
    std::mt19937_64 rng(77);
    CHECK(trainers::sample(*model, {first}, length, temperature, rng) == want);
  }
}
