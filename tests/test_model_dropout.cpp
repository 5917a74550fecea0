// Dropout inside a model: evaluation runs without it, and locked masks are the same whether a window is run
// at once or stepped one step at a time (ARTBP and sampling step a model).
#include <catch2/catch.hpp>
#include <cmath>
#include <span>
#include <vector>

#include "plugin_fixtures.hpp"
#include "rewind/trainers/evaluate.hpp"

using namespace rwd;
using autodiff::DType;
using autodiff::Tape;
using autodiff::Tensor;
using autodiff::Var;

namespace {
models::ModelConfig config_with(double dropout, bool locked) {
  models::ModelConfig c;
  c.vocab_size = 7, c.input_size = 6, c.hidden_size = 5, c.layers = 2, c.seed = 3, c.dtype = DType::f64;
  c.dropout = dropout, c.locked_dropout = locked;
  return c;
}

std::vector<std::int32_t> ids(std::size_t n) {
  std::vector<std::int32_t> out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::int32_t>((i * 5 + i / 3) % 7);
  return out;
}
}  // namespace

TEST_CASE("evaluate() runs in evaluation mode: a model with dropout scores as the same weights without",
          "[evaluate][dropout]") {
  const auto data = trainers::text_streams(ids(400), 7, 4);
  for (const bool locked : {false, true}) {
    auto dropped = test::make_model("lstm", config_with(0.5, locked), true);
    auto plain = test::make_model("lstm", config_with(0.0, false), true);
    const std::vector<autodiff::Parameter*> a = dropped->parameters(), b = plain->parameters();
    REQUIRE(a.size() == b.size());
    for (std::size_t i = 0; i < a.size(); ++i) b[i]->value() = a[i]->value();
    REQUIRE(autodiff::training());  // evaluate() itself must switch to evaluation
    const trainers::Evaluation with = trainers::evaluate(*dropped, *data, 9);
    const trainers::Evaluation without = trainers::evaluate(*plain, *data, 9);
    CHECK(with.count == without.count);
    CHECK(with.loss == without.loss);
    CHECK(autodiff::training());  // and back
  }
}

TEST_CASE("locked dropout: a window run equals the same model stepped one step at a time",
          "[cells][dropout]") {
  constexpr std::int64_t batch = 3, steps = 4;
  auto model = test::make_model("gru", config_with(0.4, true), true);
  const std::vector<std::int32_t> tokens = ids(static_cast<std::size_t>(batch * steps));
  const autodiff::RandomKey key{.seed = 11, .update = 2, .window = 5};

  Tape whole(DType::f64);
  whole.random_key() = key;
  models::ModelState state;
  model->begin(whole, model->initial_state(batch), state);
  const Tensor logits = model->head(whole, model->features(whole, tokens, state)).value();

  Tape stepped(DType::f64);
  stepped.random_key() = key;
  models::ModelState step_state;
  model->begin(stepped, model->initial_state(batch), step_state);
  const std::int64_t outputs = logits.shape().cols;
  for (std::int64_t t = 0; t < steps; ++t) {
    const std::span<const std::int32_t> step_tokens(tokens.data() + t * batch, batch);
    const Tensor y = model->step(stepped, step_tokens, step_state).value();
    for (std::int64_t i = 0; i < batch * outputs; ++i) {
      INFO("step " << t << ", element " << i);
      CHECK(y.get(i) == Approx(logits.get(t * batch * outputs + i)).epsilon(1e-12));
    }
  }
  // The masks did drop something: without dropout the outputs differ.
  auto plain = test::make_model("gru", config_with(0.0, false), true);
  Tape reference(DType::f64);
  models::ModelState plain_state;
  plain->begin(reference, plain->initial_state(batch), plain_state);
  const Tensor undropped = plain->head(reference, plain->features(reference, tokens, plain_state)).value();
  double differences = 0;
  for (std::int64_t i = 0; i < logits.numel(); ++i) differences += std::abs(logits.get(i) - undropped.get(i));
  CHECK(differences > 1e-3);
}
