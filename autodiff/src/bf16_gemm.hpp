// Products with bfloat16 operands and f32 accumulation, for MatmulPrecision::bf16 (tape.hpp): AVX512_BF16's
// vdpbf16ps multiplies pairs of bf16 values and adds both products to an f32 lane, twice the FMAs per cycle
// of f32. Both operands are rounded to bf16 (to nearest, ties to even) as they are packed; C stays f32.
//
// The layout is packed_gemm's (packed_gemm.hpp) with the reduction dimension taken in pairs: a panel of B
// holds 32 columns, and for each pair of rows (2q, 2q + 1) the two values of a column sit side by side in
// one 32-bit lane, which is what vdpbf16ps multiplies with a broadcast pair of A's row. An odd k is padded
// with a zero row. The kernels are compiled for AVX512_BF16 by target attributes alone, so the rest of the
// library keeps the build's -march; they run only when cpu_supported() says so.
#pragma once

#include <cstdint>
#include <string>

namespace rwd::autodiff::kernels::bf16 {

// Empty when this CPU executes vdpbf16ps; otherwise why it does not.
std::string unsupported_reason();

struct PackedB {
  static constexpr std::int64_t width = 32;  // columns per panel: two vectors of 16 f32 lanes

  // bf16 elements of storage that pack() needs for B [k, n].
  static std::int64_t size(std::int64_t k, std::int64_t n) {
    return (n + width - 1) / width * width * 2 * pairs_of(k);
  }
  static std::int64_t pairs_of(std::int64_t k) { return (k + 1) / 2; }

  const std::uint16_t* data;
  std::int64_t k, n;
};

// B [k, n] (b, row stride ldb), or the transpose of b [n, k] when transposed, packed into storage, with the
// panels shared out to the pool.
PackedB pack(const float* b, std::int64_t ldb, bool transposed, std::int64_t k, std::int64_t n,
             std::uint16_t* storage);

// C [m, b.n] (row stride ldc) = A [m, b.k] (row stride lda) B, plus C when add, on the calling thread: the
// per-step recurrent products, few rows of A, rounded to bf16 as they are read.
void packed_gemm(std::int64_t m, const float* a, std::int64_t lda, const PackedB& b, bool add, float* c,
                 std::int64_t ldc);

// C [m, n] = op(A) op(B) + beta C, beta 0 or 1, row-major as kernels::gemm takes it; shared out to the pool.
void gemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const float* a, std::int64_t lda,
          const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc);

// One f32 rounded to bf16 as vcvtne2ps2bf16 rounds it: to nearest with ties to even, a denormal read as zero
// (of its sign), NaN kept a (quiet) NaN.
inline std::uint16_t round_to_bf16(float x) {
  std::uint32_t bits;
  __builtin_memcpy(&bits, &x, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((bits >> 16) | 0x40u);
  if ((bits & 0x7f800000u) == 0) return static_cast<std::uint16_t>((bits >> 16) & 0x8000u);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<std::uint16_t>(bits >> 16);
}

inline float bf16_to_float(std::uint16_t h) {
  const std::uint32_t bits = std::uint32_t{h} << 16;
  float x;
  __builtin_memcpy(&x, &bits, sizeof x);
  return x;
}

}  // namespace rwd::autodiff::kernels::bf16
