// The optimisers, gradient clipping and the step-decay schedule against torch.optim's update rules, written
// out element by element in this file: three steps each, with a different gradient every step.
#include <catch2/catch.hpp>
#include <cmath>

#include "helpers.hpp"
#include "rewind/trainers/optim.hpp"

using namespace rwd;
using autodiff::DType;
using autodiff::Parameter;
using autodiff::Shape;
using autodiff::Tensor;

namespace {

constexpr int steps = 3;

// Two parameters of different shapes, so per-parameter state cannot be shared by mistake.
struct Problem {
  std::vector<Parameter> owned;
  std::vector<Parameter*> params;
  explicit Problem(DType dtype) {
    owned.emplace_back("w", test::random_tensor(Shape::matrix(2, 3), dtype, 1));
    owned.emplace_back("b", test::random_tensor(Shape::vector(4), dtype, 2));
    for (Parameter& p : owned) params.push_back(&p);
  }
  // A gradient for step `t` (0-based): different values, signs and magnitudes every step.
  void set_gradients(int t) {
    for (std::size_t i = 0; i < owned.size(); ++i) {
      Tensor& g = owned[i].grad();
      g = test::random_tensor(g.shape(), g.dtype(), 100 + 10 * static_cast<std::uint64_t>(t) + i, -2, 2);
    }
  }
  // Every element of every parameter, flattened, in double.
  std::vector<double> values() const {
    std::vector<double> out;
    for (const Parameter& p : owned)
      for (std::int64_t k = 0; k < p.value().numel(); ++k) out.push_back(p.value().get(k));
    return out;
  }
  std::vector<double> gradients() const {
    std::vector<double> out;
    for (const Parameter& p : owned)
      for (std::int64_t k = 0; k < p.grad().numel(); ++k) out.push_back(p.grad().get(k));
    return out;
  }
};

void check_close(const std::vector<double>& got, const std::vector<double>& want, double tolerance) {
  REQUIRE(got.size() == want.size());
  for (std::size_t k = 0; k < want.size(); ++k) {
    INFO("element " << k);
    CHECK(got[k] == Approx(want[k]).epsilon(tolerance).margin(tolerance));
  }
}

}  // namespace

TEST_CASE("plain SGD: p -= lr * g, three steps", "[optim]") {
  Problem problem(DType::f64);
  trainers::Optimizer sgd({.kind = "sgd", .lr = 0.3});
  std::vector<double> want = problem.values();
  for (int t = 0; t < steps; ++t) {
    problem.set_gradients(t);
    const std::vector<double> g = problem.gradients();
    for (std::size_t k = 0; k < want.size(); ++k) want[k] -= 0.3 * g[k];
    sgd.step(problem.params);
    INFO("step " << t + 1);
    check_close(problem.values(), want, 1e-14);
  }
  CHECK(sgd.updates() == steps);
}

TEST_CASE("SGD with momentum as torch.optim.SGD: buf = g at first, then mu * buf + g, and p -= lr * buf",
          "[optim]") {
  for (DType dtype : {DType::f64, DType::f32}) {
    Problem problem(dtype);
    const double lr = 0.2, mu = 0.9;
    trainers::Optimizer sgd({.kind = "sgd", .lr = lr, .momentum = mu});
    std::vector<double> want = problem.values(), buf(want.size(), 0.0);
    for (int t = 0; t < steps; ++t) {
      problem.set_gradients(t);
      const std::vector<double> g = problem.gradients();
      for (std::size_t k = 0; k < want.size(); ++k) {
        buf[k] = t == 0 ? g[k] : mu * buf[k] + g[k];
        want[k] -= lr * buf[k];
      }
      sgd.step(problem.params);
      INFO((dtype == DType::f64 ? "f64" : "f32") << ", step " << t + 1);
      check_close(problem.values(), want, dtype == DType::f64 ? 1e-13 : 1e-5);
    }
  }
}

TEST_CASE("Adam as torch.optim.Adam: bias-corrected moments, eps outside the square root", "[optim]") {
  for (DType dtype : {DType::f64, DType::f32}) {
    Problem problem(dtype);
    // beta1 and beta2 far apart, so a bias correction that uses the wrong one changes the result.
    const double lr = 0.05, beta1 = 0.8, beta2 = 0.99, eps = 1e-3;
    trainers::Optimizer adam({.kind = "adam", .lr = lr, .beta1 = beta1, .beta2 = beta2, .eps = eps});
    std::vector<double> want = problem.values(), m(want.size(), 0.0), v(want.size(), 0.0);
    for (int t = 1; t <= steps; ++t) {
      problem.set_gradients(t);
      const std::vector<double> g = problem.gradients();
      for (std::size_t k = 0; k < want.size(); ++k) {
        m[k] = beta1 * m[k] + (1 - beta1) * g[k];
        v[k] = beta2 * v[k] + (1 - beta2) * g[k] * g[k];
        const double m_hat = m[k] / (1 - std::pow(beta1, t));
        const double v_hat = v[k] / (1 - std::pow(beta2, t));
        want[k] -= lr * m_hat / (std::sqrt(v_hat) + eps);
      }
      adam.step(problem.params);
      INFO((dtype == DType::f64 ? "f64" : "f32") << ", step " << t);
      check_close(problem.values(), want, dtype == DType::f64 ? 1e-12 : 1e-5);
    }
  }
}

TEST_CASE("clipping scales every gradient by max_norm / norm and returns the norm before clipping",
          "[optim]") {
  Problem problem(DType::f64);
  problem.set_gradients(0);
  const std::vector<double> g = problem.gradients();
  double squares = 0;
  for (double x : g) squares += x * x;
  const double norm = std::sqrt(squares);
  REQUIRE(norm > 1.0);

  // Above the limit: scaled down to exactly max_norm, direction kept.
  const double max_norm = norm / 4;
  CHECK(trainers::clip_grad_norm(problem.params, max_norm) == Approx(norm).epsilon(1e-14));
  std::vector<double> want(g.size());
  for (std::size_t k = 0; k < g.size(); ++k) want[k] = g[k] * (max_norm / norm);
  check_close(problem.gradients(), want, 1e-14);
  double clipped = 0;
  for (double x : problem.gradients()) clipped += x * x;
  CHECK(std::sqrt(clipped) == Approx(max_norm).epsilon(1e-13));

  // At or below the limit: untouched.
  problem.set_gradients(0);
  CHECK(trainers::clip_grad_norm(problem.params, 2 * norm) == Approx(norm).epsilon(1e-14));
  CHECK(problem.gradients() == g);
  CHECK(trainers::clip_grad_norm(problem.params, INFINITY) == Approx(norm).epsilon(1e-14));
  CHECK(problem.gradients() == g);
}

TEST_CASE("step decay: lr * gamma^floor(updates / step_every), applied to each SGD step", "[optim]") {
  const double lr = 0.8, gamma = 0.5;
  const std::int64_t every = 3;
  Problem problem(DType::f64);
  trainers::Optimizer sgd({.kind = "sgd", .lr = lr, .step_every = every, .gamma = gamma});
  std::vector<double> want = problem.values();
  for (std::int64_t done = 0; done < 10; ++done) {
    const double expected_lr = lr * std::pow(gamma, static_cast<double>(done / every));
    INFO("after " << done << " updates");
    CHECK(sgd.current_lr() == Approx(expected_lr).epsilon(1e-15));
    problem.set_gradients(static_cast<int>(done));
    const std::vector<double> g = problem.gradients();
    for (std::size_t k = 0; k < want.size(); ++k) want[k] -= expected_lr * g[k];
    sgd.step(problem.params);
    check_close(problem.values(), want, 1e-13);
  }
  // The schedule depends on the update count alone, so a resumed optimiser continues it.
  trainers::Optimizer resumed({.kind = "sgd", .lr = lr, .step_every = every, .gamma = gamma});
  resumed.set_updates(7);
  CHECK(resumed.current_lr() == Approx(lr * gamma * gamma).epsilon(1e-15));
  // step_every 0: constant.
  trainers::Optimizer constant({.kind = "sgd", .lr = lr, .gamma = gamma});
  constant.set_updates(100);
  CHECK(constant.current_lr() == lr);
}
