// The float activations the kernels use against libm, over the range training meets and beyond.
#include <catch2/catch.hpp>
#include <cmath>

#include "../autodiff/src/fast_math.hpp"

namespace fast = rwd::autodiff::fast;

TEST_CASE("float exp, tanh and sigmoid stay within a few ulp of libm", "[fast_math]") {
  double worst_exp = 0, worst_tanh = 0, worst_sigmoid = 0;
  for (int i = -400000; i <= 400000; ++i) {
    const float x = static_cast<float>(i) * 2.2e-4f;  // [-88, 88]
    const double e = std::exp(static_cast<double>(x));
    if (x > -87.0f)
      worst_exp = std::max(worst_exp, std::abs(fast::exp(x) - e) / e);  // below: float denormals
    const double t = std::tanh(static_cast<double>(x));
    if (t != 0) worst_tanh = std::max(worst_tanh, std::abs(fast::tanh(x) - t) / std::abs(t));
    const double s = 1 / (1 + std::exp(-static_cast<double>(x)));
    if (s > 1e-30) worst_sigmoid = std::max(worst_sigmoid, std::abs(fast::sigmoid(x) - s) / s);
  }
  INFO("relative errors: exp " << worst_exp << ", tanh " << worst_tanh << ", sigmoid " << worst_sigmoid);
  CHECK(worst_exp < 4e-7);  // float epsilon is 1.19e-7
  CHECK(worst_tanh < 4e-7);
  CHECK(worst_sigmoid < 4e-7);
  CHECK(fast::tanh(0.0f) == 0.0f);
  CHECK(fast::tanh(100.0f) == 1.0f);
  CHECK(fast::tanh(-100.0f) == -1.0f);
  CHECK(fast::sigmoid(-200.0f) >= 0.0f);
  CHECK(fast::sigmoid(200.0f) == 1.0f);
  CHECK(std::isfinite(fast::exp(1000.0f)));
  CHECK(fast::exp(-1000.0f) >= 0.0f);
  // A diverging run must stay visibly non-finite: NaN in, NaN out.
  const float nan = std::nanf("");
  CHECK(std::isnan(fast::exp(nan)));
  CHECK(std::isnan(fast::tanh(nan)));
  CHECK(std::isnan(fast::sigmoid(nan)));
}
