// The built-in cells: PyTorch's equations (against a plain-loop implementation), fused == reference, and
// gradient checks of both, at 1 and 2 layers.
#include <catch2/catch.hpp>
#include <cmath>

#include "helpers.hpp"
#include "plugin_fixtures.hpp"
#include "rewind/autodiff/gradcheck.hpp"
#include "rewind/autodiff/ops.hpp"
#include "rewind/models/check.hpp"

using namespace rwd;
using autodiff::DType;
using autodiff::Shape;
using autodiff::Tape;
using autodiff::Tensor;
using autodiff::Var;

namespace {

models::ModelConfig small_config(int layers) {
  models::ModelConfig c;
  c.input_size = 2;
  c.hidden_size = 3;
  c.layers = layers;
  c.output_size = 2;
  c.dtype = DType::f64;
  c.seed = 7;
  c.init_range = 0.8;  // wider than PyTorch's default so the gates leave their linear region
  return c;
}

double relative_difference(const Tensor& a, const Tensor& b) {
  double worst = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i)
    worst = std::max(worst, std::abs(a.get(i) - b.get(i)) /
                                std::max(1e-300, std::max(std::abs(a.get(i)), std::abs(b.get(i)))));
  return worst;
}

double max_abs_difference(const Tensor& a, const Tensor& b) {
  double worst = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) worst = std::max(worst, std::abs(a.get(i) - b.get(i)));
  return worst;
}

}  // namespace

TEST_CASE("fused cells equal their primitive-only reference in values and gradients", "[cells]") {
  for (const char* cell : {"rnn", "gru", "lstm"}) {
    for (int layers : {1, 2}) {
      INFO(cell << ", " << layers << " layer(s)");
      auto reference = test::make_model(cell, small_config(layers), false, {});
      auto fused = test::make_model(cell, small_config(layers), true, {});
      Tape t1(DType::f64), t2(DType::f64);
      std::vector<Tensor> out1, out2;
      const models::UnrollOptions unroll{.batch = 2, .steps = 4};
      t1.backward(models::random_unroll(*reference, t1, unroll, &out1));
      t2.backward(models::random_unroll(*fused, t2, unroll, &out2));
      for (std::size_t s = 0; s < out1.size(); ++s) CHECK(relative_difference(out1[s], out2[s]) <= 1e-12);
      const auto p1 = reference->parameters(), p2 = fused->parameters();
      REQUIRE(p1.size() == p2.size());
      for (std::size_t i = 0; i < p1.size(); ++i) {
        INFO(p1[i]->name());
        CHECK(p1[i]->name() == p2[i]->name());
        CHECK(relative_difference(p1[i]->value(), p2[i]->value()) == 0);
        CHECK(relative_difference(p1[i]->grad(), p2[i]->grad()) <= 1e-12);
      }
    }
  }
}

TEST_CASE("every built-in cell passes a gradient check, reference and fused, 1 and 2 layers",
          "[cells][gradcheck]") {
  for (const char* cell : {"rnn", "gru", "lstm"}) {
    for (bool fused : {false, true}) {
      for (int layers : {1, 2}) {
        auto model = test::make_model(cell, small_config(layers), fused, {});
        const autodiff::GradcheckReport report = models::check_gradients(*model, {.batch = 2, .steps = 3});
        INFO(cell << (fused ? " fused" : " reference") << ", " << layers
                  << " layer(s): " << report.summary());
        CHECK(report.passed);
        CHECK(report.max_rel_error <= 1e-6);
      }
    }
  }
}

TEST_CASE("parameter names and shapes follow PyTorch's modules", "[cells]") {
  models::ModelConfig c;
  c.vocab_size = 11;
  c.input_size = 5;
  c.hidden_size = 4;
  c.layers = 2;
  auto lstm = test::make_model("lstm", c, true);
  std::vector<std::string> names;
  for (auto* p : lstm->parameters()) names.push_back(p->name() + " " + p->value().shape().str());
  CHECK(names == std::vector<std::string>{"embedding.weight [11, 5]", "rnn.weight_ih_l0 [16, 5]",
                                          "rnn.weight_hh_l0 [16, 4]", "rnn.bias_ih_l0 [16]",
                                          "rnn.bias_hh_l0 [16]", "rnn.weight_ih_l1 [16, 4]",
                                          "rnn.weight_hh_l1 [16, 4]", "rnn.bias_ih_l1 [16]",
                                          "rnn.bias_hh_l1 [16]", "head.weight [11, 4]", "head.bias [11]"});
  CHECK(test::make_model("gru", c, true)->parameter("rnn.weight_hh_l1").value().shape() ==
        Shape::matrix(12, 4));
  CHECK(test::make_model("rnn", c, true)->parameter("rnn.bias_ih_l0").value().shape() == Shape::vector(4));
}

TEST_CASE("initialisation is deterministic in the seed and forget_bias sets the forget gate", "[cells]") {
  models::ModelConfig c;
  c.input_size = 3;
  c.hidden_size = 4;
  c.output_size = 2;
  auto a = test::make_model("lstm", c, true), b = test::make_model("lstm", c, true);
  for (std::size_t i = 0; i < a->parameters().size(); ++i)
    CHECK(relative_difference(a->parameters()[i]->value(), b->parameters()[i]->value()) == 0);
  c.seed = 2;
  CHECK(relative_difference(test::make_model("lstm", c, true)->parameters()[0]->value(),
                            a->parameters()[0]->value()) > 0);
  auto biased = test::make_model("lstm", c, true, {{"forget_bias", "3"}});
  const Tensor& bih = biased->parameter("rnn.bias_ih_l0").value();
  const Tensor& bhh = biased->parameter("rnn.bias_hh_l0").value();
  for (std::int64_t j = 4; j < 8; ++j) CHECK(bih.get(j) + bhh.get(j) == 3.0);
  const double bound = 1 / std::sqrt(4.0);
  for (std::int64_t j = 0; j < 4; ++j) CHECK(std::abs(bih.get(j)) <= bound);
}

// One step of each cell computed with plain loops from the equations in docs/models.md, independently of
// the autodiff engine: the gate order and formulas must be PyTorch's.
TEST_CASE("one step matches PyTorch's equations computed with plain loops", "[cells]") {
  const std::int64_t B = 2, I = 3, H = 4;
  auto sigmoid = [](double v) { return 1 / (1 + std::exp(-v)); };
  for (const char* cell : {"rnn", "gru", "lstm"}) {
    for (bool fused : {false, true}) {
      INFO(cell << (fused ? " fused" : " reference"));
      models::ModelConfig c;
      c.input_size = I;
      c.hidden_size = H;
      c.output_size = 1;
      c.dtype = DType::f64;
      c.init_range = 0.7;
      auto model = test::make_model(cell, c, fused);
      const Tensor& wi = model->parameter("rnn.weight_ih_l0").value();
      const Tensor& wh = model->parameter("rnn.weight_hh_l0").value();
      const Tensor& bi = model->parameter("rnn.bias_ih_l0").value();
      const Tensor& bh = model->parameter("rnn.bias_hh_l0").value();
      const Tensor x = test::random_tensor(Shape::matrix(B, I), DType::f64, 1, -2, 2);
      std::vector<Tensor> carried = model->initial_state(B);
      for (std::size_t i = 0; i < carried.size(); ++i)
        carried[i] = test::random_tensor(carried[i].shape(), DType::f64, 2 + i);
      // pre[g](b, j): gate block g of the input and hidden projections
      auto proj = [&](const Tensor& w, const Tensor& bias, const Tensor& v, std::int64_t in, std::int64_t row,
                      std::int64_t b) {
        double s = bias.get(row);
        for (std::int64_t k = 0; k < in; ++k) s += w.at(row, k) * v.at(b, k);
        return s;
      };
      Tensor expected_h(Shape::matrix(B, H), DType::f64), expected_c(Shape::matrix(B, H), DType::f64);
      for (std::int64_t b = 0; b < B; ++b) {
        for (std::int64_t j = 0; j < H; ++j) {
          auto gi = [&](int g) { return proj(wi, bi, x, I, g * H + j, b); };
          auto gh = [&](int g) { return proj(wh, bh, carried[0], H, g * H + j, b); };
          const double h = carried[0].at(b, j);
          if (std::string(cell) == "rnn") {
            expected_h.set(b * H + j, std::tanh(gi(0) + gh(0)));
          } else if (std::string(cell) == "gru") {
            const double r = sigmoid(gi(0) + gh(0)), z = sigmoid(gi(1) + gh(1));
            const double n = std::tanh(gi(2) + r * gh(2));
            expected_h.set(b * H + j, (1 - z) * n + z * h);
          } else {
            const double i = sigmoid(gi(0) + gh(0)), f = sigmoid(gi(1) + gh(1));
            const double g = std::tanh(gi(2) + gh(2)), o = sigmoid(gi(3) + gh(3));
            const double cn = f * carried[1].at(b, j) + i * g;
            expected_c.set(b * H + j, cn);
            expected_h.set(b * H + j, o * std::tanh(cn));
          }
        }
      }
      Tape tape(DType::f64);
      models::ModelState state;
      model->begin(tape, carried, state);
      model->step(tape, tape.input(x), state);
      std::vector<Tensor> after;
      model->end(state, after);
      // Summation order differs from BLAS, so compare absolutely: the values are of order 1.
      CHECK(max_abs_difference(after[0], expected_h) <= 1e-14);
      if (std::string(cell) == "lstm") CHECK(max_abs_difference(after[1], expected_c) <= 1e-14);
    }
  }
}

TEST_CASE("token models embed ids and reject real inputs, and the reverse", "[cells]") {
  models::ModelConfig c;
  c.vocab_size = 5;
  c.hidden_size = 3;
  auto model = test::make_model("gru", c, true);
  Tape tape;
  models::ModelState state;
  model->begin(tape, model->initial_state(2), state);
  const std::int32_t ids[] = {4, 0};
  CHECK(model->step(tape, ids, state).shape() == Shape::matrix(2, 5));
  CHECK_THROWS_WITH(model->begin(tape, {}, state), Catch::Contains("carried state has 0 tensors"));
  models::ModelConfig real;
  real.input_size = 2;
  real.output_size = 1;
  auto regression = test::make_model("rnn", real, true);
  regression->begin(tape, regression->initial_state(2), state);
  CHECK_THROWS_WITH(regression->step(tape, ids, state),
                    Catch::Contains("token ids given to a model with real-valued inputs"));
}

TEST_CASE("tied weights: one tensor whose gradient is the sum of the embedding's and the head's",
          "[cells][tied][gradcheck]") {
  models::ModelConfig c;
  c.vocab_size = 7;
  c.hidden_size = c.input_size = 4;
  c.layers = 2;
  c.dtype = DType::f64;
  c.init_range = 0.5;
  models::ModelConfig tied_config = c;
  tied_config.tie_weights = true;
  auto tied = test::make_model("lstm", tied_config, true);
  std::vector<std::string> names;
  for (auto* p : tied->parameters()) names.push_back(p->name());
  CHECK(std::count(names.begin(), names.end(), "head.weight") == 0);
  CHECK(std::count(names.begin(), names.end(), "embedding.weight") == 1);
  const autodiff::GradcheckReport report = models::check_gradients(*tied, {.batch = 2, .steps = 3});
  INFO(report.summary());
  CHECK(report.passed);

  // The reference: an untied model holding the same values in both places. A window through the whole-window
  // path (features + fused cross-entropy) gives the tied embedding the sum of the untied two gradients.
  auto untied = test::make_model("lstm", c, true);
  for (auto* p : tied->parameters()) untied->parameter(p->name()).value() = p->value();
  untied->parameter("head.weight").value() = tied->parameter("embedding.weight").value();
  const std::vector<std::int32_t> tokens = {0, 3, 6, 1, 2, 5, 4, 4}, targets = {3, 6, 1, 2, 5, 4, 4, 0};
  auto window_gradients = [&](models::Model& model) {
    Tape tape(DType::f64);
    models::ModelState state;
    model.begin(tape, model.initial_state(2), state);
    const Var loss = model.cross_entropy(tape, model.features(tape, tokens, state), targets, {});
    tape.backward(loss);
  };
  window_gradients(*tied);
  window_gradients(*untied);
  Tensor sum = untied->parameter("embedding.weight").grad();
  for (std::int64_t i = 0; i < sum.numel(); ++i)
    sum.set(i, sum.get(i) + untied->parameter("head.weight").grad().get(i));
  CHECK(relative_difference(tied->parameter("embedding.weight").grad(), sum) <= 1e-12);
  CHECK(relative_difference(tied->parameter("head.bias").grad(), untied->parameter("head.bias").grad()) <=
        1e-12);

  models::ModelConfig mismatched = tied_config;
  mismatched.input_size = 3;
  CHECK_THROWS_WITH(test::make_model("lstm", mismatched, true),
                    Catch::Contains("tie_weights needs the embedding size (3) to equal the hidden size (4)"));
}
