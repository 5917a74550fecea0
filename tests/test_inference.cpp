// Inference without a tape (rewind/autodiff/inference.hpp, Cell::infer, Model::infer): the same bits as a
// step recorded on a no-grad tape in evaluation mode, for every built-in cell and for a cell of one's own; a
// cell without such a step leaves the model to the tape with its state untouched.
#include <catch2/catch.hpp>
#include <random>

#include "plugin_fixtures.hpp"
#include "rewind/autodiff/inference.hpp"
#include "rewind/autodiff/ops.hpp"

using namespace rwd;
using autodiff::DType;
using autodiff::Shape;
using autodiff::Tape;
using autodiff::Tensor;
using autodiff::Var;
using Catch::Matchers::Contains;

namespace {

bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  for (std::int64_t i = 0; i < a.numel(); ++i)
    if (a.get(i) != b.get(i)) return false;
  return true;
}

Tensor random_tensor(Shape shape, DType dtype, std::mt19937& rng) {
  std::normal_distribution<double> normal;
  Tensor t(shape, dtype);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.set(i, normal(rng));
  return t;
}

// One step recorded on a no-grad tape in evaluation mode: what Model::infer must equal.
Tensor recorded_step(models::Model& model, const Tensor& x, std::vector<Tensor>& state) {
  Tape tape(model.config().dtype);
  autodiff::NoGradGuard no_grad;
  autodiff::EvalModeGuard eval;
  models::ModelState vars;
  model.begin(tape, state, vars);
  Tensor y;
  model.step(tape, tape.input(x), vars).copy_to(y);
  model.end(vars, state);
  return y;
}

// Steps both ways from one state and checks every output and state tensor for equal bits.
void check_infer_equals_step(models::Model& model, std::int64_t batch, int steps) {
  std::mt19937 rng(5);
  std::vector<Tensor> recorded = model.initial_state(batch), inferred = recorded;
  for (int t = 0; t < steps; ++t) {
    INFO("step " << t);
    const Tensor x =
        random_tensor(Shape::matrix(batch, model.config().input_size), model.config().dtype, rng);
    const Tensor y = recorded_step(model, x, recorded);
    const Tensor* z = model.infer(x, inferred);
    REQUIRE(z != nullptr);
    CHECK(same_bits(y, *z));
    for (std::size_t i = 0; i < recorded.size(); ++i) CHECK(same_bits(recorded[i], inferred[i]));
  }
}

// A tanh RNN of one's own, written with public ops; with_infer adds its tape-free step.
class OwnRnn final : public models::Cell {
 public:
  OwnRnn(const models::CellSpec& spec, bool with_infer)
      : input_(spec.input_size),
        hidden_(spec.hidden_size),
        with_infer_(with_infer),
        w_(spec.name("weight_ih"),
           spec.initializer->uniform(Shape::matrix(hidden_, input_), spec.dtype, 0.5)),
        u_(spec.name("weight_hh"),
           spec.initializer->uniform(Shape::matrix(hidden_, hidden_), spec.dtype, 0.5)),
        b_(spec.name("bias_ih"), spec.initializer->uniform(Shape::vector(hidden_), spec.dtype, 0.5)),
        c_(spec.name("bias_hh"), spec.initializer->uniform(Shape::vector(hidden_), spec.dtype, 0.5)) {}
  std::int64_t input_size() const override { return input_; }
  std::int64_t hidden_size() const override { return hidden_; }
  models::State step(Tape& t, const Var& x, const models::State& s) override {
    return {autodiff::rnn_pointwise(autodiff::linear(x, t.param(w_), t.param(b_)),
                                    autodiff::linear(s[0], t.param(u_), t.param(c_)))};
  }
  const Tensor* infer(const Tensor& x, std::span<Tensor> s) override {
    if (!with_infer_) return nullptr;
    autodiff::infer::linear(x, w_.value(), b_.value(), projected_x_);
    autodiff::infer::linear(s[0], u_.value(), c_.value(), projected_h_);
    autodiff::infer::rnn_pointwise(projected_x_, projected_h_, s[0]);
    return &s[0];
  }
  std::vector<autodiff::Parameter*> parameters() override { return {&w_, &u_, &b_, &c_}; }

 private:
  std::int64_t input_, hidden_;
  bool with_infer_;
  autodiff::Parameter w_, u_, b_, c_;
  Tensor projected_x_, projected_h_;
};

models::ModelConfig config(std::int64_t input, std::int64_t hidden, int layers, DType dtype) {
  models::ModelConfig c;
  c.input_size = input;
  c.hidden_size = hidden;
  c.layers = layers;
  c.output_size = 2;
  c.dtype = dtype;
  c.seed = 11;
  c.init_range = 0.6;  // wide enough that the gates leave their linear region
  c.dropout = 0.3;     // inference runs none, as evaluation mode
  return c;
}

}  // namespace

TEST_CASE("Model::infer equals a step recorded in evaluation mode bit for bit: every built-in cell",
          "[inference]") {
  for (const char* cell : {"rnn", "gru", "lstm"})
    for (DType dtype : {DType::f32, DType::f64})
      for (int layers : {1, 2})
        for (const auto& [input, hidden] : {std::pair<std::int64_t, std::int64_t>{1, 32}, {3, 13}})
          for (std::int64_t batch : {1, 3}) {
            INFO(cell << " " << autodiff::name_of(dtype) << ", " << layers << " layer(s), input " << input
                      << ", hidden " << hidden << ", batch " << batch);
            auto model = test::make_model(cell, config(input, hidden, layers, dtype), true);
            check_infer_equals_step(*model, batch, 5);
          }
}

TEST_CASE("Model::infer of token ids equals a step recorded in evaluation mode bit for bit", "[inference]") {
  for (const char* cell : {"gru", "lstm"})
    for (DType dtype : {DType::f32, DType::f64}) {
      INFO(cell << " " << autodiff::name_of(dtype));
      models::ModelConfig c = config(6, 10, 2, dtype);
      c.vocab_size = 7;
      c.output_size = 0;
      auto model = test::make_model(cell, c, true);
      std::vector<Tensor> recorded = model->initial_state(2), inferred = recorded;
      for (int t = 0; t < 5; ++t) {
        const std::int32_t ids[2] = {t % 7, (3 * t + 1) % 7};
        Tape tape(dtype);
        autodiff::NoGradGuard no_grad;
        autodiff::EvalModeGuard eval;
        models::ModelState vars;
        model->begin(tape, recorded, vars);
        Tensor y;
        model->step(tape, ids, vars).copy_to(y);
        model->end(vars, recorded);
        const Tensor* z = model->infer(ids, inferred);
        REQUIRE(z != nullptr);
        CHECK(same_bits(y, *z));
        for (std::size_t i = 0; i < recorded.size(); ++i) CHECK(same_bits(recorded[i], inferred[i]));
      }
    }
}

TEST_CASE("a cell of one's own infers with the public kernels, bit for bit", "[inference]") {
  models::Model model(config(2, 9, 2, DType::f64),
                      [](const models::CellSpec& spec) { return std::make_unique<OwnRnn>(spec, true); });
  check_infer_equals_step(model, 2, 4);
}

TEST_CASE("a layer without a tape-free step leaves Model::infer to the tape, the state untouched",
          "[inference]") {
  std::mt19937 rng(3);
  SECTION("the reference (unfused) built-in cells") {
    auto model = test::make_model("lstm", config(2, 4, 1, DType::f64), false);
    std::vector<Tensor> state = model->initial_state(1);
    state[0].fill(0.25);
    const std::vector<Tensor> before = state;
    CHECK(model->infer(random_tensor(Shape::matrix(1, 2), DType::f64, rng), state) == nullptr);
    for (std::size_t i = 0; i < state.size(); ++i) CHECK(same_bits(state[i], before[i]));
  }
  SECTION("a second layer without one, after a first layer that has stepped") {
    models::Model model(config(2, 4, 2, DType::f64), [](const models::CellSpec& spec) {
      return std::make_unique<OwnRnn>(spec, spec.layer == 0);
    });
    std::vector<Tensor> state = model.initial_state(1);
    const std::vector<Tensor> before = state;
    for (int call = 0; call < 2; ++call) {
      CHECK(model.infer(random_tensor(Shape::matrix(1, 2), DType::f64, rng), state) == nullptr);
      for (std::size_t i = 0; i < state.size(); ++i) CHECK(same_bits(state[i], before[i]));
    }
  }
}

TEST_CASE("inference refuses tokens, a wrong state and tensors that do not fit, naming the kernel",
          "[inference][errors]") {
  std::mt19937 rng(1);
  auto model = test::make_model("gru", config(2, 4, 1, DType::f32), true);
  std::vector<Tensor> short_state;
  CHECK_THROWS_WITH(model->infer(Tensor(Shape::matrix(1, 2), DType::f32), short_state),
                    Contains("the state has 0 tensors, the layers need 1"));
  std::vector<Tensor> state = model->initial_state(1);
  CHECK_THROWS_WITH(model->infer(Tensor(Shape::matrix(1, 3), DType::f32), state),
                    Contains("infer::linear: x [1, 3], weight [12, 2]"));
  CHECK_THROWS_WITH(model->infer(Tensor(Shape::matrix(1, 2), DType::f64), state),
                    Contains("infer::linear: every tensor must be a f64"));

  models::ModelConfig tokens = config(4, 4, 1, DType::f32);
  tokens.vocab_size = 5;
  auto token_model = test::make_model("gru", tokens, true);
  std::vector<Tensor> token_state = token_model->initial_state(1);
  CHECK_THROWS_WITH(token_model->infer(Tensor(Shape::matrix(1, 4), DType::f32), token_state),
                    Contains("real-valued inputs given to a token model"));
  const std::int32_t outside[1] = {5};
  CHECK_THROWS_WITH(token_model->infer(outside, token_state),
                    Contains("token 5 is outside the vocabulary of 5"));
  CHECK_THROWS_WITH(model->infer(std::span<const std::int32_t>(outside), state),
                    Contains("token ids given to a model with real-valued inputs"));

  const Tensor gates = random_tensor(Shape::matrix(1, 8), DType::f64, rng);
  Tensor gi = gates, c_prev(Shape::matrix(1, 2), DType::f64), h, c;
  CHECK_THROWS_WITH(autodiff::infer::lstm_pointwise(gi, gates, c_prev, h, c_prev),
                    Contains("infer::lstm_pointwise: h and c must be two tensors other than c_prev"));
  CHECK_THROWS_WITH(
      autodiff::infer::lstm_pointwise(gi, random_tensor(Shape::matrix(1, 6), DType::f64, rng), c_prev, h, c),
      Contains("infer::lstm_pointwise: gh is [1, 6], expected [1, 8]"));
  CHECK_THROWS_WITH(autodiff::infer::gru_pointwise(gi, gates, c_prev, h),
                    Contains("infer::gru_pointwise: gi is [1, 8], expected [1, 6]"));
  CHECK_THROWS_WITH(autodiff::infer::rnn_pointwise(gi, c_prev, h),
                    Contains("shapes [1, 8] and [1, 2] differ"));
}

TEST_CASE(
    "infer::matmul equals the matmul op bit for bit, at one row and at many, and refuses what does not fit",
    "[inference]") {
  std::mt19937 rng(4);
  for (DType dtype : {DType::f32, DType::f64})
    for (std::int64_t rows : {1, 3, 130}) {
      INFO(rows << " rows");
      const Tensor a = random_tensor(Shape::matrix(rows, 37), dtype, rng);
      const Tensor b = random_tensor(Shape::matrix(37, 20), dtype, rng);
      Tape tape(dtype);
      const Tensor want = autodiff::matmul(tape.input(a), tape.input(b)).value();
      Tensor y;
      autodiff::infer::matmul(a, b, y);
      REQUIRE(y.shape() == want.shape());
      for (std::int64_t i = 0; i < y.numel(); ++i) CHECK(y.get(i) == want.get(i));
    }
  Tensor y;
  CHECK_THROWS_WITH(autodiff::infer::matmul(Tensor(Shape::matrix(2, 3), DType::f32),
                                            Tensor(Shape::matrix(4, 5), DType::f32), y),
                    Contains("infer::matmul: a [2, 3] and b [4, 5] do not fit a @ b"));
}
