// Dropout and the training / evaluation mode: masks are pure functions of the tape's RandomKey.
#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "helpers.hpp"
#include "rewind/autodiff/ops.hpp"

using namespace rwd::autodiff;

namespace {
// The dropout of an all-ones [rows, cols] input on a fresh f64 tape with this key.
std::vector<double> mask_of(RandomKey key, std::int64_t rows, std::int64_t cols, double p,
                            DropoutOptions o = {}) {
  Tape tape(DType::f64);
  tape.random_key() = key;
  Tensor ones(Shape::matrix(rows, cols), DType::f64);
  ones.fill(1.0);
  const auto v = dropout(tape.input(ones), p, o).values<double>();
  return {v.begin(), v.end()};
}
}  // namespace

TEST_CASE("dropout keeps about 1 - p of the elements, scaled by 1 / (1 - p)", "[ops][dropout]") {
  for (double p : {0.1, 0.5, 0.9}) {
    const std::vector<double> y = mask_of({.seed = 7, .update = 3, .window = 0}, 200, 100, p);
    double kept = 0;
    for (double v : y) {
      CHECK((v == 0.0 || v == Approx(1 / (1 - p)).epsilon(1e-15)));
      kept += v != 0.0;
    }
    const double fraction = kept / static_cast<double>(y.size());
    INFO("p = " << p << ": kept " << fraction);
    CHECK(std::abs(fraction - (1 - p)) < 4 * std::sqrt(p * (1 - p) / static_cast<double>(y.size())));
  }
}

TEST_CASE("the same key draws the same mask, another update, window, seed or stream another",
          "[ops][dropout]") {
  const RandomKey key{.seed = 1, .update = 10, .window = 40};
  const std::vector<double> a = mask_of(key, 8, 16, 0.5);
  CHECK(a == mask_of(key, 8, 16, 0.5));
  CHECK(a != mask_of({.seed = 1, .update = 11, .window = 40}, 8, 16, 0.5));
  CHECK(a != mask_of({.seed = 1, .update = 10, .window = 41}, 8, 16, 0.5));
  CHECK(a != mask_of({.seed = 2, .update = 10, .window = 40}, 8, 16, 0.5));
  CHECK(mask_of(key, 8, 16, 0.5, {.stream = 1}) != mask_of(key, 8, 16, 0.5, {.stream = 2}));
}

TEST_CASE("a locked mask repeats every period_rows rows and across calls of the same stream",
          "[ops][dropout]") {
  const std::vector<double> y = mask_of({.seed = 3}, 12, 10, 0.5, {.period_rows = 4, .stream = 0});
  for (std::int64_t r = 4; r < 12; ++r)
    for (std::int64_t c = 0; c < 10; ++c)
      CHECK(y[static_cast<std::size_t>(r * 10 + c)] == y[static_cast<std::size_t>((r % 4) * 10 + c)]);
  // Step by step: [4, 10] per step with the same stream is the same mask as the window's locked one.
  const std::vector<double> step = mask_of({.seed = 3}, 4, 10, 0.5, {.stream = 0});
  CHECK(std::vector<double>(y.begin(), y.begin() + 40) == step);
}

TEST_CASE("dropout's gradient is its mask, scaled", "[ops][dropout]") {
  Tape tape(DType::f64);
  tape.random_key() = {.seed = 5, .update = 2};
  Parameter w = rwd::test::random_parameter("w", Shape::matrix(5, 6), 1);
  const Var y = dropout(tape.param(w), 0.3);
  const auto values = y.values<double>();
  const std::vector<double> kept(values.begin(), values.end());
  tape.backward(sum(y));
  for (std::int64_t i = 0; i < 30; ++i) {
    const bool on = kept[static_cast<std::size_t>(i)] != 0.0;
    CHECK(w.grad().get(i) == (on ? Approx(1 / 0.7).epsilon(1e-15) : Approx(0.0)));
  }
}

TEST_CASE("dropout is the identity in evaluation mode and for p = 0, bad p is refused", "[ops][dropout]") {
  Tape tape(DType::f64);
  const Var x = tape.input(rwd::test::random_tensor(Shape::matrix(3, 4), DType::f64, 2));
  CHECK(training());
  {
    EvalModeGuard eval;
    CHECK(!training());
    CHECK(dropout(x, 0.5).id() == x.id());
  }
  CHECK(training());
  CHECK(dropout(x, 0.0).id() == x.id());
  CHECK_THROWS_WITH(dropout(x, 1.0), Catch::Contains("dropout") && Catch::Contains("p must be in [0, 1)"));
  CHECK_THROWS_WITH(dropout(x, -0.1), Catch::Contains("p must be in [0, 1)"));
  CHECK_THROWS_WITH(dropout(x, 0.5, {.period_rows = 2}),
                    Catch::Contains("period_rows 2 does not divide the 3 rows"));
}
