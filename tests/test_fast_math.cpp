// The float activations the kernels use against libm, over the range training meets and over every float.
#include <bit>
#include <catch2/catch.hpp>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "../autodiff/src/fast_math.hpp"

namespace fast = rwd::autodiff::fast;

TEST_CASE("float exp, tanh and sigmoid stay within a few ulp of libm", "[fast_math]") {
  double worst_exp = 0, worst_tanh = 0, worst_sigmoid = 0;
  for (int i = -400000; i <= 400000; ++i) {
    const float x = static_cast<float>(i) * 2.2e-4f;  // [-88, 88]
    const double e = std::exp(static_cast<double>(x));
    if (x > -87.3f) worst_exp = std::max(worst_exp, std::abs(fast::exp(x) - e) / e);  // below: 0
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
  // A diverging run must stay visibly non-finite: NaN in, NaN out.
  const float nan = std::nanf("");
  CHECK(std::isnan(fast::exp(nan)));
  CHECK(std::isnan(fast::tanh(nan)));
  CHECK(std::isnan(fast::sigmoid(nan)));
}

TEST_CASE("float exp is inf past FLT_MAX's logarithm and 0 below the normal range", "[fast_math]") {
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(fast::exp(inf) == inf);
  CHECK(fast::exp(-inf) == 0.0f);
  CHECK(fast::exp(1000.0f) == inf);
  CHECK(fast::exp(88.8f) == inf);
  CHECK(fast::exp(-100.0f) == 0.0f);
  CHECK(fast::sigmoid(-100.0f) == 0.0f);
  // Between ln(FLT_MAX / 2) and ln(FLT_MAX) the value is finite and right: the top binade of float.
  for (const float x : {88.0f, 88.5f, 88.7f, 88.72f}) {
    INFO("x = " << x);
    const double e = std::exp(static_cast<double>(x));
    CHECK(std::abs(fast::exp(x) - e) / e < 4e-7);
  }
  CHECK(fast::exp(-87.3f) > 0.0f);
  CHECK(fast::exp(-87.3f) >= FLT_MIN);
}

// The kernels see whatever a diverging run or a raw feature gives them. tanh, whose polynomial once
// overflowed to NaN for |x| >= 5092, is checked on every bit pattern of magnitude 2^-40 or more (chunked into
// loops the compiler vectorises, as the kernels' are; every 61st under the sanitizers); exp and sigmoid,
// which do not vectorise, on every 7th of those.
// Below 2^-40 the polynomials' terms go denormal, and on Intel cores every instruction meeting a denormal
// takes a microcode assist of a hundred cycles or more: a CI run ran out of its 90 minutes with the whole
// sweep still running under the sanitizers (it took 137 s there on an AMD EPYC), most likely on such a
// machine. That range, a third of all patterns, is sampled at a prime stride instead; its results are x
// itself for tanh, 1 for exp.
TEST_CASE("float tanh, exp and sigmoid are finite and bounded in every binade of float", "[fast_math]") {
  constexpr std::size_t chunk = 1 << 16;
  constexpr std::uint32_t all_normal_from = (127u - 40u) << 23;  // |x| = 2^-40: p z x is still ~2^-122
  constexpr std::uint32_t tiny_stride = 1009;
#ifdef REWIND_SANITIZED
  constexpr std::uint32_t normal_stride = 61;  // whole, 93 s under ASan + UBSan here
#else
  constexpr std::uint32_t normal_stride = 1;
#endif
  std::vector<float> x, t(chunk), e(chunk), s(chunk);
  x.reserve(chunk);
  std::uint64_t tanh_bad = 0, exp_bad = 0, sigmoid_bad = 0, swept = 0;
  float first_bad_tanh = 0;
  double worst_tanh = 0, worst_exp = 0;
  const auto check = [&] {
    const std::size_t n = x.size();
    for (std::size_t i = 0; i < n; ++i) t[i] = fast::tanh(x[i]);
    for (std::size_t i = 0; i < n; ++i) e[i] = i % 7 == 0 ? fast::exp(x[i]) : 1.0f;
    for (std::size_t i = 0; i < n; ++i) s[i] = i % 7 == 0 ? fast::sigmoid(x[i]) : 0.5f;
    // NaN exactly for NaN; tanh in [-1, 1] and not of the opposite sign to x; exp >= 0; sigmoid in [0, 1].
    std::uint32_t tb = 0, eb = 0, sb = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const bool nan_in = x[i] != x[i];
      tb += nan_in ? t[i] == t[i] : !(t[i] >= -1.0f && t[i] <= 1.0f && t[i] * x[i] >= 0.0f);
      const bool sampled = i % 7 == 0;
      eb += sampled && (nan_in ? e[i] == e[i] : !(e[i] >= 0.0f));
      sb += sampled && (nan_in ? s[i] == s[i] : !(s[i] >= 0.0f && s[i] <= 1.0f));
    }
    if (tb != 0 && tanh_bad == 0)
      for (std::size_t i = 0; i < n && first_bad_tanh == 0; ++i)
        if (!(t[i] >= -1.0f && t[i] <= 1.0f)) first_bad_tanh = x[i];
    tanh_bad += tb, exp_bad += eb, sigmoid_bad += sb, swept += n;
    for (std::size_t i = 0; i < n; i += 7 * 17) {  // accuracy against libm on a sample of every binade
      if (x[i] != x[i]) continue;
      const double tx = std::tanh(static_cast<double>(x[i]));
      if (std::abs(tx) > 1e-30) worst_tanh = std::max(worst_tanh, std::abs(t[i] - tx) / std::abs(tx));
      const double ex = std::exp(static_cast<double>(x[i]));
      if (ex >= FLT_MIN && ex <= FLT_MAX) worst_exp = std::max(worst_exp, std::abs(e[i] - ex) / ex);
      if (ex > FLT_MAX && e[i] != std::numeric_limits<float>::infinity()) ++exp_bad;
    }
    x.clear();
  };
  // Magnitudes [first, last] at a stride, each with both signs; up to 0x7fffffff, the last NaN.
  const auto sweep = [&](std::uint32_t first, std::uint32_t last, std::uint32_t stride) {
    for (std::uint64_t m = first; m <= last; m += stride) {
      for (const std::uint32_t sign : {0u, 0x80000000u})
        x.push_back(std::bit_cast<float>(static_cast<std::uint32_t>(m) | sign));
      if (x.size() == chunk) check();
    }
    check();
  };
  sweep(0, all_normal_from - 1, tiny_stride);
  sweep(1, 1, 1);                                      // the smallest denormal
  sweep(all_normal_from - 1, all_normal_from - 1, 1);  // the largest sampled magnitude
  sweep(all_normal_from, 0x7fffffffu, normal_stride);
  INFO("first bad tanh input: " << first_bad_tanh);
  CHECK(swept > 2 * std::uint64_t{0x7fffffffu - all_normal_from} / normal_stride);
  CHECK(tanh_bad == 0);
  CHECK(exp_bad == 0);
  CHECK(sigmoid_bad == 0);
  INFO("relative errors: tanh " << worst_tanh << ", exp " << worst_exp);
  CHECK(worst_tanh < 4e-7);
  CHECK(worst_exp < 4e-7);
}
