// Values of the ops against independent formulas (the gradient checks only show that backward matches
// forward), their edge cases (ties, boundaries, large inputs, broadcasting, views), the refusals of bad
// input, and layer_norm against the same formula written in primitives.
#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "rewind/autodiff/ops.hpp"

using namespace rwd::autodiff;
using Catch::Contains;

namespace {

Shape m(std::int64_t r, std::int64_t c) {
  return Shape::matrix(r, c);
}
Tensor tensor(std::initializer_list<double> values, Shape shape, DType dtype = DType::f64) {
  return Tensor::from(values, shape, dtype);
}

// Every element of v equals expected(i) within a relative (and absolute) tolerance.
void check_values(const Var& v, const std::function<double(std::int64_t)>& expected, double tol) {
  const Tensor t = v.value();
  for (std::int64_t i = 0; i < t.numel(); ++i) {
    INFO("element " << i << " of " << name_of(v.op()) << " " << v.shape().str());
    const double e = expected(i);
    if (std::isnan(e)) {
      CHECK(std::isnan(t.get(i)));
    } else if (std::isinf(e)) {
      CHECK(t.get(i) == e);
    } else {
      CHECK(t.get(i) == Approx(e).epsilon(tol).margin(tol));
    }
  }
}

// d sum(f(x) * w) / dx with a fixed w of f's output shape, on an f64 tape.
Tensor grad_of(const std::function<Var(const Var&)>& f, const Tensor& x, std::uint64_t seed = 7) {
  Tape tape(DType::f64);
  Var in = tape.input(x, true);
  Var y = f(in);
  const Tensor w = rwd::test::random_tensor(y.shape(), DType::f64, seed, 0.5, 1.5);
  const Seed s{y, &w};
  tape.backward(std::span<const Seed>(&s, 1));
  return tape.grad(in);
}

const std::vector<double> xs = {-30, -4.5, -1.25, -0.5, -1e-3, 0, 1e-3, 0.3, 0.5, 1, 2.75, 6, 30};

}  // namespace

TEST_CASE("elementwise ops match their formulas in double and float", "[ops][values]") {
  struct Unary {
    std::string name;
    std::function<Var(const Var&)> op;
    std::function<double(double)> formula;
    double lo = -1e300;  // inputs below are skipped (outside the domain)
  };
  const double k = std::sqrt(2 / M_PI);
  const std::vector<Unary> ops = {
      {"x + 0.25", [](const Var& x) { return x + 0.25; }, [](double x) { return x + 0.25; }},
      {"0.25 + x", [](const Var& x) { return 0.25 + x; }, [](double x) { return x + 0.25; }},
      {"x - 0.25", [](const Var& x) { return x - 0.25; }, [](double x) { return x - 0.25; }},
      {"0.25 - x", [](const Var& x) { return 0.25 - x; }, [](double x) { return 0.25 - x; }},
      {"x * 3", [](const Var& x) { return x * 3.0; }, [](double x) { return x * 3; }},
      {"x / 4", [](const Var& x) { return x / 4.0; }, [](double x) { return x / 4; }},
      {"x / 3", [](const Var& x) { return div_scalar(x, 3.0); }, [](double x) { return x / 3; }},
      {"3 / x", [](const Var& x) { return 3.0 / x; }, [](double x) { return 3 / x; }},
      {"square", [](const Var& x) { return square(x); }, [](double x) { return x * x; }},
      {"pow 3", [](const Var& x) { return pow(x, 3.0); }, [](double x) { return x * x * x; }},
      {"pow 0.5", [](const Var& x) { return pow(x, 0.5); }, [](double x) { return std::sqrt(x); }, 0},
      {"pow -2", [](const Var& x) { return pow(x, -2.0); }, [](double x) { return 1 / (x * x); }},
      {"sqrt", [](const Var& x) { return sqrt(x); }, [](double x) { return std::sqrt(x); }, 0},
      {"rsqrt", [](const Var& x) { return rsqrt(x); }, [](double x) { return 1 / std::sqrt(x); }, 0},
      {"abs", [](const Var& x) { return abs(x); }, [](double x) { return x < 0 ? -x : x; }},
      {"softplus", [](const Var& x) { return softplus(x); },
       [](double x) { return std::log(1 + std::exp(x)); }},
      {"log_sigmoid", [](const Var& x) { return log_sigmoid(x); },
       [](double x) { return std::log(1 / (1 + std::exp(-x))); }},
      {"gelu", [](const Var& x) { return gelu(x); },
       [](double x) { return x * 0.5 * std::erfc(-x / std::sqrt(2)); }},
      {"gelu tanh", [](const Var& x) { return gelu(x, GeluApproximation::tanh); },
       [k](double x) { return 0.5 * x * (1 + std::tanh(k * (x + 0.044715 * std::pow(x, 3)))); }},
      {"elu", [](const Var& x) { return elu(x); }, [](double x) { return x > 0 ? x : std::exp(x) - 1; }},
      {"elu 0.5", [](const Var& x) { return elu(x, 0.5); },
       [](double x) { return x > 0 ? x : 0.5 * (std::exp(x) - 1); }},
      {"leaky_relu", [](const Var& x) { return leaky_relu(x); },
       [](double x) { return x > 0 ? x : 0.01 * x; }},
      {"leaky_relu 0.2", [](const Var& x) { return leaky_relu(x, 0.2); },
       [](double x) { return x > 0 ? x : 0.2 * x; }},
      {"clamp", [](const Var& x) { return clamp(x, -1, 2); },
       [](double x) { return x < -1  ? -1
                             : x > 2 ? 2
                                     : x; }},
  };
  for (const DType dtype : {DType::f64, DType::f32}) {
    for (const Unary& u : ops) {
      std::vector<double> inputs;
      for (double x : xs)
        if (x >= u.lo) inputs.push_back(x);
      const auto count = static_cast<std::int64_t>(inputs.size());
      Tensor x = Tensor::from(inputs, Shape::vector(count), dtype);
      Tape tape(dtype);
      INFO(u.name << " on " << name_of(dtype));
      // In float, compare against the formula applied to the float-rounded input.
      check_values(
          u.op(tape.input(x)), [&](std::int64_t i) { return u.formula(x.get(i)); },
          dtype == DType::f64 ? 1e-12 : 2e-6);
    }
  }
}

TEST_CASE("gelu agrees with torch.nn.functional.gelu", "[ops][values]") {
  Tape tape(DType::f64);
  Var x = tape.input(tensor({1.0, -0.5}, Shape::vector(2)));
  // torch.nn.functional.gelu(torch.tensor([1.0, -0.5], dtype=torch.float64), approximate=...)
  const Tensor exact = gelu(x).value(), approx = gelu(x, GeluApproximation::tanh).value();
  CHECK(exact.get(0) == Approx(0.8413447460685429).epsilon(1e-14));
  CHECK(exact.get(1) == Approx(-0.15426876936299344).epsilon(1e-13));
  CHECK(approx.get(0) == Approx(0.8411919906082768).epsilon(1e-13));
  CHECK(approx.get(1) == Approx(-0.15428599017485606).epsilon(1e-13));
}

TEST_CASE("softplus and log_sigmoid stay finite and exact for large inputs", "[ops][values]") {
  for (const DType dtype : {DType::f64, DType::f32}) {
    Tape tape(dtype);
    Var x = tape.input(tensor({-1000, -100, 100, 1000}, Shape::vector(4), dtype), true);
    const Tensor sp = softplus(x).value(), ls = log_sigmoid(x).value();
    CHECK(sp.get(0) == 0);
    CHECK(sp.get(1) == Approx(std::exp(-100.0)).epsilon(1e-5).margin(1e-44));  // float: a denormal
    CHECK(sp.get(2) == 100);
    CHECK(sp.get(3) == 1000);
    CHECK(ls.get(0) == -1000);
    CHECK(ls.get(1) == -100);
    CHECK(ls.get(2) == Approx(-std::exp(-100.0)).epsilon(1e-5).margin(1e-44));
    CHECK(ls.get(3) == 0);
    tape.backward(sum(softplus(x) + log_sigmoid(x)));  // sigmoid(x) + sigmoid(-x) = 1
    const Tensor g = tape.grad(x);
    for (std::int64_t i = 0; i < 4; ++i) CHECK(g.get(i) == Approx(1.0));
  }
}

TEST_CASE("binary ops broadcast rows, columns and scalars by one rule", "[ops][values][broadcast]") {
  const Tensor a = rwd::test::random_tensor(m(3, 4), DType::f64, 1, 0.5, 2);
  const Tensor row = rwd::test::random_tensor(Shape::vector(4), DType::f64, 2, 0.5, 2);
  const Tensor col = rwd::test::random_tensor(m(3, 1), DType::f64, 3, 0.5, 2);
  const Tensor one = tensor({1.5}, Shape::scalar());
  struct Binary {
    const char* name;
    Var (*op)(const Var&, const Var&);
    double (*formula)(double, double);
  };
  const Binary ops[] = {{"add", add, [](double u, double v) { return u + v; }},
                        {"sub", sub, [](double u, double v) { return u - v; }},
                        {"mul", mul, [](double u, double v) { return u * v; }},
                        {"div", div, [](double u, double v) { return u / v; }},
                        {"maximum", maximum, [](double u, double v) { return u > v ? u : v; }},
                        {"minimum", minimum, [](double u, double v) { return u < v ? u : v; }}};
  // (r, c) of each operand, read as the rule says.
  auto at = [](const Tensor& t, std::int64_t r, std::int64_t c) {
    return t.get((t.shape().rows == 1 ? 0 : r) * t.shape().cols + (t.shape().cols == 1 ? 0 : c));
  };
  for (const Binary& b : ops) {
    for (const auto& [left, right, out] :
         std::vector<std::tuple<Tensor, Tensor, Shape>>{{a, a, m(3, 4)},
                                                        {a, row, m(3, 4)},
                                                        {row, a, m(3, 4)},
                                                        {a, col, m(3, 4)},
                                                        {col, a, m(3, 4)},
                                                        {col, row, m(3, 4)},
                                                        {a, one, m(3, 4)},
                                                        {one, row, Shape::vector(4)}}) {
      Tape tape(DType::f64);
      const Var y = b.op(tape.input(left), tape.input(right));
      INFO(b.name << " " << left.shape().str() << " with " << right.shape().str());
      CHECK(y.shape() == out);
      check_values(
          y,
          [&](std::int64_t i) {
            return b.formula(at(left, i / out.cols, i % out.cols), at(right, i / out.cols, i % out.cols));
          },
          1e-14);
    }
  }
  // The column operand's gradient is summed over the columns, the row operand's over the rows.
  Tape tape(DType::f64);
  Var vc = tape.input(col, true), vr = tape.input(row, true);
  tape.backward(sum(mul(vc, vr)));
  double row_total = 0, col_total = 0;
  for (std::int64_t i = 0; i < 4; ++i) row_total += row.get(i);
  for (std::int64_t i = 0; i < 3; ++i) col_total += col.get(i);
  for (std::int64_t i = 0; i < 3; ++i) CHECK(tape.grad(vc).get(i) == Approx(row_total));
  for (std::int64_t i = 0; i < 4; ++i) CHECK(tape.grad(vr).get(i) == Approx(col_total));
}

TEST_CASE("maximum and minimum split a tie's gradient in half, as torch", "[ops][values]") {
  const Tensor a = tensor({1, 2, 3}, Shape::vector(3)), b = tensor({1, 5, 0}, Shape::vector(3));
  for (auto op : {maximum, minimum}) {
    Tape tape(DType::f64);
    Var x = tape.input(a, true), y = tape.input(b, true);
    tape.backward(sum(op(x, y)));
    const bool is_max = op == maximum;
    CHECK(tape.grad(x).get(0) == 0.5);
    CHECK(tape.grad(y).get(0) == 0.5);
    CHECK(tape.grad(x).get(1) == (is_max ? 0 : 1));
    CHECK(tape.grad(y).get(1) == (is_max ? 1 : 0));
    CHECK(tape.grad(x).get(2) == (is_max ? 1 : 0));
  }
  // A NaN on either side: the value is NaN and both sides get all of dy, as torch.maximum's backward (it
  // masks only where the other side wins): maximum(NaN, 0) sends dy to the NaN.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (auto op : {maximum, minimum}) {
    Tape tape(DType::f64);
    const Var p = tape.input(tensor({nan, 1, nan}, Shape::vector(3)), true),
              q = tape.input(tensor({0, nan, nan}, Shape::vector(3)), true);
    const Var v = op(p, q);
    for (std::int64_t i = 0; i < 3; ++i) CHECK(std::isnan(v.value().get(i)));
    tape.backward(sum(v));
    for (std::int64_t i = 0; i < 3; ++i) {
      CHECK(tape.grad(p).get(i) == 1);
      CHECK(tape.grad(q).get(i) == 1);
    }
  }
}

TEST_CASE("x / c divides: a subnormal c does not overflow through 1 / c", "[ops][values]") {
  const double c = 1e-310, x = 1e-300;  // 1 / c is inf in double; x / c is 1e10
  Tape tape(DType::f64);
  const Var v = tape.input(tensor({x}, Shape::vector(1)), true);
  const Var y = v / c;
  CHECK(y.value().get(0) == x / c);
  tape.backward(sum(y));
  CHECK(tape.grad(v).get(0) == 1 / c);  // inf, as torch's gradient
  Tape f32(DType::f32);
  CHECK(div_scalar(f32.input(tensor({1}, Shape::vector(1), DType::f32)), 3.0).value().get(0) == 1.0f / 3.0f);
}

TEST_CASE("clamp, abs and the relus at their kinks and bounds", "[ops][values]") {
  const Tensor x = tensor({-2, -1, 0, 1, 3}, Shape::vector(5));
  // torch.clamp passes the gradient on the bounds themselves (lo <= x <= hi).
  const Tensor gc = grad_of([](const Var& v) { return clamp(v, -1, 1); }, x);
  const Tensor w = rwd::test::random_tensor(Shape::vector(5), DType::f64, 7, 0.5, 1.5);
  const double expected_clamp[] = {0, 1, 1, 1, 0};
  for (std::int64_t i = 0; i < 5; ++i) CHECK(gc.get(i) == w.get(i) * expected_clamp[i]);
  CHECK(grad_of([](const Var& v) { return abs(v); }, x).get(2) == 0);
  CHECK(grad_of([](const Var& v) { return leaky_relu(v, 0.1); }, x).get(2) == Approx(0.1 * w.get(2)));
  CHECK(grad_of([](const Var& v) { return elu(v); }, x).get(2) == Approx(w.get(2)));  // alpha e^0
  CHECK(grad_of([](const Var& v) { return pow(v, 0.0); }, x).get(2) == 0);
  Tape tape;
  CHECK_THROWS_WITH(clamp(tape.input(Tensor(m(2, 2), DType::f32)), 1, -1),
                    Contains("clamp: lo 1.000000 is not <= hi -1.000000 for x [2, 2]"));
}

TEST_CASE("where selects by a constant mask and sends no gradient to it", "[ops][values]") {
  Tape tape(DType::f64);
  const Tensor mask = tensor({1, 0, 0, 1, 1, 0}, m(2, 3));
  Var a = tape.input(tensor({1, 2, 3, 4, 5, 6}, m(2, 3)), true);
  Var b = tape.input(tensor({-1, -2, -3}, Shape::vector(3)), true);  // a row, broadcast
  const Var y = where(tape.input(mask), a, b);
  const double expected[] = {1, -2, -3, 4, 5, -3};
  check_values(
      y, [&](std::int64_t i) { return expected[i]; }, 0);
  tape.backward(sum(y));
  for (std::int64_t i = 0; i < 6; ++i) CHECK(tape.grad(a).get(i) == mask.get(i));
  CHECK(tape.grad(b).get(0) == 0);  // column 0: taken from a in both rows
  CHECK(tape.grad(b).get(1) == 1);  // from b in row 0 only
  CHECK(tape.grad(b).get(2) == 2);  // from b in both rows
  Tape other(DType::f64);
  Var learned_mask = other.input(mask, true);
  CHECK_THROWS_WITH(where(learned_mask, learned_mask, learned_mask),
                    Contains("where: the mask [2, 3] requires a gradient"));
  CHECK_THROWS_WITH(where(other.input(tensor({1, 0}, Shape::vector(2))), learned_mask, learned_mask),
                    Contains("where: shapes [2] and [2, 3] do not broadcast"));
}

TEST_CASE("reductions along an axis match their formulas", "[ops][values]") {
  const Tensor x = tensor({1, 5, 5, -2, 0.5, -1, 7, 7, 3, 3, 3, 3}, m(3, 4));
  for (const DType dtype : {DType::f64, DType::f32}) {
    Tape tape(dtype);
    Var v = tape.input(x.to(dtype), true);
    auto row = [&](std::int64_t r, auto f) {
      double acc = f.init;
      for (std::int64_t c = 0; c < 4; ++c) acc = f(acc, x.at(r, c));
      return acc;
    };
    struct Sum {
      double init = 0;
      double operator()(double a, double b) const { return a + b; }
    };
    struct Max {
      double init = -1e300;
      double operator()(double a, double b) const { return a > b ? a : b; }
    };
    struct Lse {
      double init = 0;
      double operator()(double a, double b) const { return a + std::exp(b); }
    };
    const double tol = dtype == DType::f64 ? 1e-13 : 1e-6;
    CHECK(sum_cols(v).shape() == m(3, 1));
    CHECK(sum_rows(v).shape() == m(1, 4));
    check_values(
        sum_cols(v), [&](std::int64_t r) { return row(r, Sum{}); }, tol);
    check_values(
        mean_cols(v), [&](std::int64_t r) { return row(r, Sum{}) / 4; }, tol);
    check_values(
        max_cols(v), [&](std::int64_t r) { return row(r, Max{}); }, tol);
    check_values(
        logsumexp_cols(v), [&](std::int64_t r) { return std::log(row(r, Lse{})); }, tol);
    auto col_sum = [&](std::int64_t c) { return x.at(0, c) + x.at(1, c) + x.at(2, c); };
    check_values(sum_rows(v), col_sum, tol);
    check_values(
        mean_rows(v), [&](std::int64_t c) { return col_sum(c) / 3; }, tol);
    check_values(
        softmax(v), [&](std::int64_t i) { return std::exp(x.get(i)) / row(i / 4, Lse{}); }, tol);
    check_values(
        log_softmax(v), [&](std::int64_t i) { return x.get(i) - std::log(row(i / 4, Lse{})); }, tol);
    // max_cols sends the gradient to the first maximum of a row: columns 1, 2 and 0.
    tape.backward(sum(max_cols(v)));
    const double expected[] = {0, 1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0};
    for (std::int64_t i = 0; i < 12; ++i) CHECK(tape.grad(v).get(i) == expected[i]);
  }
}

TEST_CASE("logsumexp, softmax and log_softmax are shifted: no overflow", "[ops][values]") {
  const double inf = std::numeric_limits<double>::infinity();
  for (const DType dtype : {DType::f64, DType::f32}) {
    Tape tape(dtype);
    Var v = tape.input(tensor({1000, 1000, -1000, -1000, -inf, -inf}, m(3, 2), dtype));
    const Tensor lse = logsumexp_cols(v).value(), p = softmax(v).value(), lp = log_softmax(v).value();
    CHECK(lse.get(0) == Approx(1000 + std::log(2.0)));
    CHECK(lse.get(1) == Approx(-1000 + std::log(2.0)));
    CHECK(lse.get(2) == -inf);  // as torch.logsumexp
    for (std::int64_t i = 0; i < 4; ++i) {
      CHECK(p.get(i) == Approx(0.5));
      CHECK(lp.get(i) == Approx(-std::log(2.0)));
    }
  }
}

TEST_CASE("a row holding +inf: softmax and log_softmax are NaN throughout, logsumexp is +inf, as torch",
          "[ops][values]") {
  const double inf = std::numeric_limits<double>::infinity();
  for (const DType dtype : {DType::f64, DType::f32}) {
    Tape tape(dtype);
    Var v = tape.input(tensor({inf, 1, -inf, 1}, m(2, 2), dtype), true);
    const Var p = softmax(v), lp = log_softmax(v), lse = logsumexp_cols(v);
    CHECK(std::isnan(p.value().get(0)));
    CHECK(std::isnan(p.value().get(1)));
    CHECK(std::isnan(lp.value().get(0)));
    CHECK(std::isnan(lp.value().get(1)));
    CHECK(p.value().get(2) == 0);  // -inf is fine: exp(-inf - 1) = 0
    CHECK(p.value().get(3) == 1);
    CHECK(lp.value().get(2) == -inf);
    CHECK(lse.value().get(0) == inf);
    CHECK(lse.value().get(1) == 1);
    tape.backward(sum(lse));
    CHECK(std::isnan(tape.grad(v).get(0)));  // torch: [nan, 0] for [inf, 1]
    CHECK(tape.grad(v).get(1) == 0);
  }
}

TEST_CASE("transpose copies, reshape is a view", "[ops][values]") {
  Tape tape(DType::f64);
  Var x = tape.input(tensor({1, 2, 3, 4, 5, 6}, m(2, 3)), true);
  const Var t = transpose(x);
  CHECK(t.shape() == m(3, 2));
  const double transposed[] = {1, 4, 2, 5, 3, 6};
  check_values(
      t, [&](std::int64_t i) { return transposed[i]; }, 0);
  const Var r = reshape(x, m(3, 2));
  CHECK(r.shape() == m(3, 2));
  CHECK(r.values<double>().data() == x.values<double>().data());  // no copy
  CHECK(reshape(x, Shape::vector(6)).shape() == Shape::vector(6));
  CHECK(reshape(sum(x), Shape::matrix(1, 1)).shape() == m(1, 1));
  tape.backward(sum(mul(r, reshape(t, m(3, 2)))));  // sum of x[i] * x^T[i] as flat arrays
  const Tensor g = tape.grad(x);
  // d/dx_k of sum_i x[i] xt[i]: xt[k] (as r) plus x[j] where xt[j] = x_k (as t).
  const double x_flat[] = {1, 2, 3, 4, 5, 6};
  for (std::int64_t k = 0; k < 6; ++k) {
    double expected = transposed[k];
    for (std::int64_t j = 0; j < 6; ++j)
      if (transposed[j] == x_flat[k]) expected += x_flat[j];
    CHECK(g.get(k) == expected);
  }
  CHECK_THROWS_WITH(reshape(x, m(4, 2)), Contains("reshape: x [2, 3] has 6 elements but [4, 2] has 8"));
  CHECK_THROWS_WITH(reshape(x, Shape{2, 3, 1}), Contains("reshape: target shape {rows 2, cols 3, rank 1}"));
  CHECK_THROWS_WITH(transpose(reshape(x, Shape::vector(6))), Contains("transpose: needs a matrix, got [6]"));
}

TEST_CASE("layer_norm matches torch.nn.LayerNorm's formula and its primitive spelling", "[ops][values]") {
  const Tensor xs_ = rwd::test::random_tensor(m(4, 6), DType::f64, 11, -2, 2);
  const Tensor gain = rwd::test::random_tensor(Shape::vector(6), DType::f64, 12, 0.5, 1.5);
  const Tensor bias = rwd::test::random_tensor(Shape::vector(6), DType::f64, 13, -0.5, 0.5);
  const double eps = 1e-3;
  auto fused = [&](const Var& x, const Var& g, const Var& b) { return layer_norm(x, g, b, eps); };
  auto primitives = [&](const Var& x, const Var& g, const Var& b) {
    const Var centred = x - mean_cols(x);  // [4, 6] - [4, 1]: a column broadcast
    const Var rstd = rsqrt(mean_cols(square(centred)) + eps);
    return centred * rstd * g + b;  // times [4, 1], then [6] over the rows
  };
  const Tensor w = rwd::test::random_tensor(m(4, 6), DType::f64, 14);
  std::vector<Tensor> values, grads;
  for (auto f : {std::function<Var(const Var&, const Var&, const Var&)>(fused),
                 std::function<Var(const Var&, const Var&, const Var&)>(primitives)}) {
    Tape tape(DType::f64);
    Var x = tape.input(xs_, true), g = tape.input(gain, true), b = tape.input(bias, true);
    const Var y = f(x, g, b);
    values.push_back(y.value());
    const Seed s{y, &w};
    tape.backward(std::span<const Seed>(&s, 1));
    grads.push_back(tape.grad(x));
    grads.push_back(tape.grad(g));
    grads.push_back(tape.grad(b));
  }
  for (std::int64_t i = 0; i < 24; ++i) {
    const std::int64_t r = i / 6, c = i % 6;
    double mean = 0, var = 0;
    for (std::int64_t j = 0; j < 6; ++j) mean += xs_.at(r, j) / 6;
    for (std::int64_t j = 0; j < 6; ++j) var += (xs_.at(r, j) - mean) * (xs_.at(r, j) - mean) / 6;
    CHECK(values[0].get(i) ==
          Approx((xs_.get(i) - mean) / std::sqrt(var + eps) * gain.get(c) + bias.get(c)).epsilon(1e-12));
    CHECK(values[0].get(i) == Approx(values[1].get(i)).epsilon(1e-12));
  }
  for (std::size_t k = 0; k < 3; ++k)
    for (std::int64_t i = 0; i < grads[k].numel(); ++i) {
      INFO("input " << k << " element " << i);
      CHECK(grads[k].get(i) == Approx(grads[k + 3].get(i)).epsilon(1e-10).margin(1e-12));
    }
  Tape tape;
  Var x = tape.input(Tensor(m(2, 3), DType::f32)), g = tape.input(Tensor(Shape::vector(4), DType::f32));
  CHECK_THROWS_WITH(layer_norm(x, g, g), Contains("layer_norm: x [2, 3], gain [4], bias [4] do not fit"));
  CHECK_THROWS_WITH(layer_norm(x, x, x),
                    Contains("layer_norm: x [2, 3], gain [2, 3], bias [2, 3] do not fit"));
}

TEST_CASE("first_nonfinite names the div node after a division by zero", "[ops][values]") {
  Tape tape;
  Var x = tape.input(tensor({1, 2}, Shape::vector(2), DType::f32), true);
  Var y = tape.input(tensor({1, 0}, Shape::vector(2), DType::f32));
  Var q = x / y;
  CHECK(tape.first_nonfinite() == "div [2] (node #2)");
  tape.backward(sum(q));  // still found after backward
  CHECK(tape.first_nonfinite() == "div [2] (node #2)");
  Tape other;
  Var z = other.input(tensor({-1, 4}, Shape::vector(2), DType::f32));
  sqrt(z);
  CHECK(other.first_nonfinite() == "sqrt [2] (node #1)");
}

TEST_CASE("the new ops name themselves and the shapes when inputs do not fit", "[ops][errors]") {
  Tape tape;
  Var a = tape.input(Tensor(m(3, 4), DType::f32), true);
  Var b = tape.input(Tensor(m(2, 4), DType::f32), true);
  CHECK_THROWS_WITH(div(a, b), Contains("div: shapes [3, 4] and [2, 4] do not broadcast"));
  CHECK_THROWS_WITH(maximum(a, tape.input(Tensor(m(3, 2), DType::f32))),
                    Contains("maximum: shapes [3, 4] and [3, 2] do not broadcast"));
  CHECK_THROWS_WITH(minimum(a, b), Contains("minimum: shapes [3, 4] and [2, 4]"));
  CHECK_THROWS_WITH(add(a, tape.input(Tensor(m(2, 1), DType::f32))),
                    Contains("add: shapes [3, 4] and [2, 1]"));
  Var empty = tape.input(Tensor(m(2, 0), DType::f32));
  CHECK_THROWS_WITH(max_cols(empty), Contains("max_cols: x [2, 0] has no columns"));
  CHECK_THROWS_WITH(mean_cols(empty), Contains("mean_cols: x [2, 0] has no columns"));
  CHECK_THROWS_WITH(logsumexp_cols(empty), Contains("logsumexp_cols: x [2, 0] has no columns"));
  CHECK_THROWS_WITH(softmax(empty), Contains("softmax: x [2, 0] has no columns"));
  CHECK_THROWS_WITH(log_softmax(empty), Contains("log_softmax: x [2, 0] has no columns"));
  CHECK_THROWS_WITH(mean_rows(tape.input(Tensor(m(0, 3), DType::f32))),
                    Contains("mean_rows: x [0, 3] has no rows"));
  CHECK(sum_cols(empty).value().get(0) == 0);
  CHECK_THROWS_WITH(square(Var{}), Contains("square: an input is empty"));
}

TEST_CASE("a few rows times a parameter equal the same product by a plain input, before and after backward",
          "[ops][values][matmul]") {
  // The parameter path packs the weights once per window (ops.cpp, packed_parameter); the input path is
  // OpenBLAS. Shapes that leave partial panels and tiles, both transposes of B, the pack reused by a second
  // product, and dA through the other packing.
  const DType dtype = GENERATE(DType::f32, DType::f64);
  const bool transposed = GENERATE(false, true);
  const std::int64_t rows = GENERATE(1, 7, 32), k = 37, n = 53;
  const double tol = dtype == DType::f32 ? 1e-5 : 1e-12;
  const Shape shape_w = transposed ? m(n, k) : m(k, n);
  const Transpose tb = transposed ? Transpose::yes : Transpose::no;
  Parameter w("w", rwd::test::random_tensor(shape_w, dtype, 1));
  const Tensor x0 = rwd::test::random_tensor(m(rows, k), dtype, 2);
  const Tensor x1 = rwd::test::random_tensor(m(rows, k), dtype, 3);
  const Tensor seed = rwd::test::random_tensor(m(rows, n), dtype, 4);

  Tape by_input(dtype), by_parameter(dtype);
  const Var xi0 = by_input.input(x0, true), xi1 = by_input.input(x1, true),
            wi = by_input.input(w.value(), true);
  const Var yi = matmul(xi0, wi, Transpose::no, tb) + matmul(xi1, wi, Transpose::no, tb);
  const Var xp0 = by_parameter.input(x0, true), xp1 = by_parameter.input(x1, true);
  const Var yp = matmul(xp0, by_parameter.param(w), Transpose::no, tb) +
                 matmul(xp1, by_parameter.param(w), Transpose::no, tb);
  const Tensor expected = yi.value();
  check_values(
      yp, [&](std::int64_t i) { return expected.get(i); }, tol);

  const Seed si{yi, &seed}, sp{yp, &seed};
  by_input.backward(std::span<const Seed>(&si, 1));
  by_parameter.backward(std::span<const Seed>(&sp, 1));
  for (auto [input, parameter] : {std::pair{xi0, xp0}, std::pair{xi1, xp1}}) {
    const Tensor gi = by_input.grad(input), gp = by_parameter.grad(parameter);
    for (std::int64_t i = 0; i < gi.numel(); ++i)
      CHECK(gp.get(i) == Approx(gi.get(i)).epsilon(tol).margin(tol));
  }
  const Tensor gw = by_input.grad(wi);
  for (std::int64_t i = 0; i < gw.numel(); ++i)
    CHECK(w.grad().get(i) == Approx(gw.get(i)).epsilon(tol).margin(tol));

  // Recorded after backward, when an optimiser may have changed the value: the new value counts.
  for (std::int64_t i = 0; i < w.value().numel(); ++i) w.value().set(i, 2 * w.value().get(i));
  const Var after = matmul(by_parameter.input(x0), by_parameter.param(w), Transpose::no, tb);
  Tape fresh(dtype);
  const Tensor doubled = matmul(fresh.input(x0), fresh.input(w.value()), Transpose::no, tb).value();
  check_values(
      after, [&](std::int64_t i) { return doubled.get(i); }, tol);
}

TEST_CASE("ops shared out over the pool equal the same ops row by row", "[ops][values][threads]") {
  // [64, 256] is above the size from which elementwise and layer_norm rows, and the rows of a product by a
  // parameter, are split over the threads; one row at a time is not. Run under ThreadSanitizer too.
  constexpr std::int64_t rows = 64, cols = 256, inner = 96;
  Parameter w("w", rwd::test::random_tensor(m(cols, inner), DType::f64, 11));
  Parameter gain("gain", rwd::test::random_tensor(Shape::vector(cols), DType::f64, 12));
  Parameter bias("bias", rwd::test::random_tensor(Shape::vector(cols), DType::f64, 13));
  const Tensor x0 = rwd::test::random_tensor(m(rows, inner), DType::f64, 14);
  const Tensor column0 = rwd::test::random_tensor(m(rows, 1), DType::f64, 15);
  auto f = [&](Tape& t, const Var& x, const Var& column) {
    const Var h = tanh(matmul(x, t.param(w), Transpose::no, Transpose::yes) * column + t.param(bias));
    return sum(layer_norm(sigmoid(h) / (1.0 + square(h)), t.param(gain), t.param(bias)));
  };
  auto run = [&](bool by_row) {
    for (Parameter* p : {&w, &gain, &bias}) p->zero_grad();
    Tape tape(DType::f64);
    const Var x = tape.input(x0, true), column = tape.input(column0, true);
    Var loss = tape.input(Tensor(Shape::scalar(), DType::f64));
    if (by_row) {
      for (std::int64_t r = 0; r < rows; ++r)
        loss = loss + f(tape, slice_rows(x, r, r + 1), slice_rows(column, r, r + 1));
    } else {
      loss = f(tape, x, column);
    }
    tape.backward(loss);
    std::vector<Tensor> out{Tensor::from({loss.item()}, Shape::scalar(), DType::f64), tape.grad(x),
                            tape.grad(column)};
    for (Parameter* p : {&w, &gain, &bias}) out.push_back(p->grad());
    return out;
  };
  const std::vector<Tensor> whole = run(false), by_row = run(true);
  for (std::size_t i = 0; i < whole.size(); ++i)
    for (std::int64_t e = 0; e < whole[i].numel(); ++e) {
      INFO("result " << i << " element " << e);
      CHECK(whole[i].get(e) == Approx(by_row[i].get(e)).epsilon(1e-10).margin(1e-12));
    }
}

TEST_CASE("one-row products (a stream stepped row by row) equal a double reference on every path",
          "[ops][matmul]") {
  // Widths that take the four-rows-at-a-time sums with and without a tail, one row at a time, and the
  // scaled-row form (k below a vector's width, and B not transposed).
  for (const auto& [n, k] :
       {std::pair<std::int64_t, std::int64_t>{128, 32}, {7, 13}, {5, 1}, {9, 3}, {4, 8}}) {
    for (const DType dtype : {DType::f32, DType::f64}) {
      CAPTURE(n, k, dtype == DType::f32);
      const Tensor a = rwd::test::random_tensor(Shape::matrix(1, k), dtype, 11);
      const Tensor w = rwd::test::random_tensor(Shape::matrix(n, k), dtype, 12);
      const Tensor wt = rwd::test::random_tensor(Shape::matrix(k, n), dtype, 13);
      const Tensor bias = rwd::test::random_tensor(Shape::matrix(1, n), dtype, 14);
      Tape tape(dtype);
      const Tensor linear_y = linear(tape.input(a), tape.input(w), tape.input(bias)).value();
      const Tensor plain_y = matmul(tape.input(a), tape.input(wt)).value();
      const double tolerance = dtype == DType::f32 ? 1e-5 : 1e-13;
      for (std::int64_t j = 0; j < n; ++j) {
        double by_w = bias.get(j), by_wt = 0;
        for (std::int64_t p = 0; p < k; ++p) {
          by_w += a.get(p) * w.get(j * k + p);
          by_wt += a.get(p) * wt.get(p * n + j);
        }
        CHECK(linear_y.get(j) == Approx(by_w).margin(tolerance));
        CHECK(plain_y.get(j) == Approx(by_wt).margin(tolerance));
      }
    }
  }
}
