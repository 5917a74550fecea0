// Branch-free float exp, tanh and sigmoid that the compiler can vectorise (libm's are scalar calls, and
// tanhf alone took ~28% of an LSTM's time at hidden 64 under perf). Cephes' single-precision polynomials,
// a few ulp from the libm results (tests/test_fast_math.cpp). Double precision keeps libm: gradient checks
// and the fused == reference comparisons run in double.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

namespace rwd::autodiff::fast {

// exp(x) for x in [-87.33, 88.72] (float's normal range); inf above, 0 below (where libm would return
// denormals), NaN for NaN. Branch-free: the bounds are selects the compiler turns into blends.
inline float exp(float x) {
  constexpr float lowest = -87.336544f;  // ln(FLT_MIN): below it the result would be denormal
  // Clamped so that n below fits the exponent arithmetic; above ln(FLT_MAX) = 88.7228 the final product
  // overflows to inf by itself.
  const float xc = x < lowest ? lowest : (x > 89.0f ? 89.0f : x);
  // x = n ln2 + r with n = round(x / ln2), |r| <= ln2 / 2; rounded by truncating conversion, because floor
  // is a library call without SSE4.1 and would stop the loop from vectorising.
  const float t = xc * 1.44269504088896341f;
  const float whole = t == t ? t : 0.0f;  // a NaN must not reach the integer conversion; r stays NaN below
  const auto ni = static_cast<std::int32_t>(whole + (whole >= 0 ? 0.5f : -0.5f));
  const auto n = static_cast<float>(ni);
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // 2^n as two normal factors: n spans [-126, 128], one power of two cannot hold 2^128 (the product
  // overflows to inf exactly when exp(x) exceeds FLT_MAX).
  const std::int32_t half = ni / 2;
  const float scale_a = std::bit_cast<float>(static_cast<std::uint32_t>(half + 127) << 23);
  const float scale_b = std::bit_cast<float>(static_cast<std::uint32_t>(ni - half + 127) << 23);
  const float y = p * scale_a * scale_b;
  // Zeroed by a product, not a select: GCC leaves this ?: as a branch and every loop over exp, tanh and
  // sigmoid unvectorised (3x slower; tests/fast_math_vectorises.cmake watches it). y is finite here.
  return y * static_cast<float>(!(x < lowest));
}

inline float tanh(float x) {
  const float a = std::fabs(x);
  // Small |x|: odd polynomial; large: 1 - 2 / (e^2a + 1). Both computed, one kept, so no branch. The
  // polynomial reads x clamped to its own range: unclamped, p z x overflows to inf for |x| > ~5000 and the
  // unused term times zero is NaN. NaN passes the clamp and stays NaN.
  const float xs = x < -0.625f ? -0.625f : (x > 0.625f ? 0.625f : x);
  const float z = xs * xs;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = p * z * xs + xs;
  // exp(2a) is inf for a > 44.4, so large is exactly 1 there.
  const float large = 1.0f - 2.0f / (exp(2.0f * a) + 1.0f);
  // Selected arithmetically and signed by bits: with AVX enabled GCC leaves a ?: or copysign here as a branch
  // and the loop unvectorised. Both terms are finite for every non-NaN x, infinities included.
  const float signed_large = std::bit_cast<float>(std::bit_cast<std::uint32_t>(large) |
                                                  (std::bit_cast<std::uint32_t>(x) & 0x80000000u));
  const float use_small = static_cast<float>(a < 0.625f);
  return use_small * small + (1.0f - use_small) * signed_large;
}

inline float sigmoid(float x) {
  const float e = exp(-std::fabs(x));  // in (0, 1]: no overflow either way
  const float r = 1.0f / (1.0f + e);
  return x >= 0 ? r : e * r;
}

}  // namespace rwd::autodiff::fast
