// The public gradcheck utility itself: it must catch a wrong gradient and say where.
#include <catch2/catch.hpp>

#include "helpers.hpp"
#include "rewind/autodiff/gradcheck.hpp"
#include "rewind/autodiff/ops.hpp"

using namespace rwd::autodiff;

TEST_CASE("gradcheck passes a correct function in both modes", "[gradcheck]") {
  Parameter w = rwd::test::random_parameter("w", Shape::matrix(4, 3), 21);
  Parameter x = rwd::test::random_parameter("x", Shape::matrix(2, 4), 22);
  std::vector<Parameter*> params{&w, &x};
  auto f = [&](Tape& t) { return tanh(matmul(t.param(x), t.param(w))); };
  for (GradcheckMode mode : {GradcheckMode::full_jacobian, GradcheckMode::vjp}) {
    const GradcheckReport r = gradcheck(f, params, {.mode = mode});
    INFO(r.summary());
    CHECK(r.passed);
    CHECK(r.mode == mode);
    CHECK(r.parameters.size() == 2);
    CHECK(r.parameters[0].elements_checked == 12);
  }
  CHECK(gradcheck(f, params).mode == GradcheckMode::full_jacobian);  // 6 outputs: small enough
}

TEST_CASE("gradcheck catches a wrong gradient and names the worst element", "[gradcheck]") {
  // The stop_gradient hides half of d(x^2)/dx from the analytic gradient: it is x where it should be 2x.
  Parameter x("x", Tensor::from({0.5, -2.0, 1.0}, Shape::vector(3), DType::f64));
  std::vector<Parameter*> params{&x};
  auto f = [&](Tape& t) { return sum(mul(t.param(x), stop_gradient(t.param(x)))); };
  const GradcheckReport r = gradcheck(f, params);
  CHECK_FALSE(r.passed);
  CHECK(r.worst_parameter == "x");
  CHECK(r.worst_index == 1);  // the largest |x|
  CHECK(r.worst_analytic == Approx(-2.0));
  CHECK(r.worst_numeric == Approx(-4.0));
  CHECK_THAT(r.summary(), Catch::Contains("FAILED") && Catch::Contains("x[1]"));
  CHECK_THAT(r.table(), Catch::Contains("FAILED"));
}

TEST_CASE("gradcheck leaves parameters as it found them", "[gradcheck]") {
  Parameter w = rwd::test::random_parameter("w", Shape::matrix(3, 3), 23);
  w.grad().fill(0.25);
  const Tensor value = w.value();
  std::vector<Parameter*> params{&w};
  (void)gradcheck([&](Tape& t) { return sum(exp(t.param(w))); }, params, {.max_elements_per_parameter = 4});
  for (std::int64_t i = 0; i < value.numel(); ++i) {
    CHECK(w.value().get(i) == value.get(i));
    CHECK(w.grad().get(i) == 0.25);
  }
}

TEST_CASE("gradcheck refuses single precision parameters", "[gradcheck]") {
  Parameter w = rwd::test::random_parameter("cell.weight", Shape::matrix(2, 2), 24, DType::f32);
  std::vector<Parameter*> params{&w};
  CHECK_THROWS_WITH(gradcheck([&](Tape& t) { return sum(t.param(w)); }, params),
                    Catch::Contains("parameter 'cell.weight' is f32; gradient checks run in f64"));
}
