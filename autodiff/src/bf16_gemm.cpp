#include "bf16_gemm.hpp"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "parallel.hpp"

// Only these functions may use AVX512_BF16; callers check unsupported_reason() first.
#define REWIND_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512bf16")))

namespace rwd::autodiff::kernels::bf16 {

std::string unsupported_reason() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512bf16")) return {};
  return "this CPU has no AVX512_BF16 (the vdpbf16ps instruction bf16 products run on)";
#else
  return "bf16 products are implemented for x86-64 CPUs with AVX512_BF16 only";
#endif
}

namespace {

constexpr int tile_rows = 8;  // 8 x 2 accumulators, 2 panel vectors and a broadcast: within 32 registers
constexpr std::int64_t min_part_elements = std::int64_t{1} << 16;

// src [count] rounded into dst [padded], zeros after count.
REWIND_BF16_TARGET void round_row(const float* src, std::int64_t count, std::uint16_t* dst,
                                  std::int64_t padded) {
  std::int64_t i = 0;
  for (; i + 32 <= count; i += 32) {
    const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + i + 16), _mm512_loadu_ps(src + i));
    _mm512_storeu_si512(dst + i, reinterpret_cast<const __m512i&>(v));
  }
  for (; i < count; ++i) dst[i] = round_to_bf16(src[i]);
  std::fill(dst + count, dst + padded, std::uint16_t{0});
}

// 32 values of two rows rounded and interleaved: out[2 j] = even[j], out[2 j + 1] = odd[j].
REWIND_BF16_TARGET void interleave_rounded(const float* even, const float* odd, std::uint16_t* out) {
  const __m512bh e = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(even + 16), _mm512_loadu_ps(even));
  const __m512bh o = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(odd + 16), _mm512_loadu_ps(odd));
  // Index i < 32 picks e[i], 32 + i picks o[i].
  const __m512i low = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8, 39, 7,
                                       38, 6, 37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
  const __m512i high = _mm512_add_epi16(low, _mm512_set1_epi16(16));
  const __m512i ei = reinterpret_cast<const __m512i&>(e), oi = reinterpret_cast<const __m512i&>(o);
  _mm512_storeu_si512(out, _mm512_permutex2var_epi16(ei, low, oi));
  _mm512_storeu_si512(out + 32, _mm512_permutex2var_epi16(ei, high, oi));
}

template <int Rows>
REWIND_BF16_TARGET void tile(const std::uint16_t* a, std::int64_t lda, const std::uint16_t* panel,
                             std::int64_t pairs, std::int64_t cols, bool add, float* c, std::int64_t ldc) {
  __m512 acc[Rows][2];
  for (int i = 0; i < Rows; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
  for (std::int64_t q = 0; q < pairs; ++q) {
    const __m512i b0 = _mm512_loadu_si512(panel + q * 2 * PackedB::width);
    const __m512i b1 = _mm512_loadu_si512(panel + q * 2 * PackedB::width + PackedB::width);
#pragma GCC unroll 8
    for (int i = 0; i < Rows; ++i) {
      std::int32_t pair;
      std::memcpy(&pair, a + i * lda + 2 * q, sizeof pair);
      const __m512i ai = _mm512_set1_epi32(pair);
      acc[i][0] = _mm512_dpbf16_ps(acc[i][0], reinterpret_cast<const __m512bh&>(ai),
                                   reinterpret_cast<const __m512bh&>(b0));
      acc[i][1] = _mm512_dpbf16_ps(acc[i][1], reinterpret_cast<const __m512bh&>(ai),
                                   reinterpret_cast<const __m512bh&>(b1));
    }
  }
  const auto mask = [](std::int64_t n) {
    return static_cast<__mmask16>(n >= 16 ? 0xffff : n <= 0 ? 0 : (1u << n) - 1);
  };
  const __mmask16 masks[2] = {mask(cols), mask(cols - 16)};
  for (int i = 0; i < Rows; ++i)
    for (int v = 0; v < 2; ++v) {
      float* out = c + i * ldc + 16 * v;
      __m512 r = acc[i][v];
      if (add) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(masks[v], out));
      _mm512_mask_storeu_ps(out, masks[v], r);
    }
}

template <int Rows = tile_rows>
void tile_rest(int rows, const std::uint16_t* a, std::int64_t lda, const std::uint16_t* panel,
               std::int64_t pairs, std::int64_t cols, bool add, float* c, std::int64_t ldc) {
  if constexpr (Rows > 0) {
    if (rows == Rows) return tile<Rows>(a, lda, panel, pairs, cols, add, c, ldc);
    tile_rest<Rows - 1>(rows, a, lda, panel, pairs, cols, add, c, ldc);
  }
}

// C [m, panels [first, last) of b] for A already in bf16 (row stride lda, k padded to even), on this thread.
// Rows go in blocks of 8 tiles, so that a block of C and A stays in cache while the panels pass by.
void multiply(std::int64_t m, const std::uint16_t* a, std::int64_t lda, const PackedB& b, std::int64_t first,
              std::int64_t last, bool add, float* c, std::int64_t ldc) {
  const std::int64_t pairs = PackedB::pairs_of(b.k);
  constexpr std::int64_t block = 8 * tile_rows;
  for (std::int64_t r0 = 0; r0 < m; r0 += block) {
    const std::int64_t r1 = std::min(m, r0 + block);
    for (std::int64_t p = first; p < last; ++p) {
      const std::uint16_t* panel = b.data + p * PackedB::width * 2 * pairs;
      const std::int64_t column = p * PackedB::width, cols = std::min(PackedB::width, b.n - column);
      std::int64_t r = r0;
      for (; r + tile_rows <= r1; r += tile_rows)
        tile<tile_rows>(a + r * lda, lda, panel, pairs, cols, add, c + r * ldc + column, ldc);
      if (r < r1)
        tile_rest(static_cast<int>(r1 - r), a + r * lda, lda, panel, pairs, cols, add, c + r * ldc + column,
                  ldc);
    }
  }
}

void pack_panels(const float* b, std::int64_t ldb, bool transposed, std::int64_t k, std::int64_t n,
                 std::uint16_t* storage, std::int64_t first, std::int64_t last) {
  constexpr std::int64_t width = PackedB::width;
  const std::int64_t pairs = PackedB::pairs_of(k);
  std::vector<std::uint16_t> row(static_cast<std::size_t>(std::max(2 * pairs, 2 * width)));
  for (std::int64_t p = first; p < last; ++p) {
    std::uint16_t* panel = storage + p * width * 2 * pairs;
    const std::int64_t column = p * width, cols = std::min(width, n - column);
    if (transposed) {
      // Column j of the panel is row `column + j` of b: rounded whole, its pairs are 32-bit words.
      std::uint32_t* words = reinterpret_cast<std::uint32_t*>(panel);
      for (std::int64_t j = 0; j < width; ++j) {
        if (j < cols) {
          round_row(b + (column + j) * ldb, k, row.data(), 2 * pairs);
        } else {
          std::fill(row.begin(), row.end(), std::uint16_t{0});
        }
        for (std::int64_t q = 0; q < pairs; ++q) std::memcpy(words + q * width + j, &row[2 * q], 4);
      }
      continue;
    }
    for (std::int64_t q = 0; q < pairs; ++q) {
      const float* even = b + 2 * q * ldb + column;
      const float* odd = 2 * q + 1 < k ? even + ldb : nullptr;
      std::uint16_t* out = panel + q * 2 * width;
      if (cols == width && odd != nullptr) {
        interleave_rounded(even, odd, out);
        continue;
      }
      for (std::int64_t j = 0; j < width; ++j) {
        out[2 * j] = j < cols ? round_to_bf16(even[j]) : 0;
        out[2 * j + 1] = j < cols && odd != nullptr ? round_to_bf16(odd[j]) : 0;
      }
    }
  }
}

// op(A) [m, k] rounded into dst [m, 2 pairs] (row stride 2 pairs), blocks of rows shared out. Transposed,
// rows i of op(A) are columns of a [k, m]: two source rows at a time are rounded in runs of 32 columns, and
// each column's two values become one 32-bit word of its pair in dst.
void round_rows(bool transposed, std::int64_t m, std::int64_t k, const float* a, std::int64_t lda,
                std::uint16_t* dst) {
  const std::int64_t pairs = PackedB::pairs_of(k), ld = 2 * pairs;
  constexpr std::int64_t block = 32;
  const std::int64_t blocks = (m + block - 1) / block;
  const int parts = parallel::parts_for(blocks, std::max<std::int64_t>(1, min_part_elements / (block * k)));
  parallel::run(parts, [&](int part) {
    const auto [first, last] = parallel::range(blocks, part, parts);
    std::uint16_t even[block], odd[block];
    for (std::int64_t i0 = first * block; i0 < std::min(m, last * block); i0 += block) {
      const std::int64_t count = std::min(m, i0 + block) - i0;
      if (!transposed) {
        for (std::int64_t i = i0; i < i0 + count; ++i) round_row(a + i * lda, k, dst + i * ld, ld);
        continue;
      }
      for (std::int64_t q = 0; q < pairs; ++q) {
        round_row(a + 2 * q * lda + i0, count, even, block);
        if (2 * q + 1 < k) {
          round_row(a + (2 * q + 1) * lda + i0, count, odd, block);
        } else {
          std::fill_n(odd, block, std::uint16_t{0});
        }
        for (std::int64_t c = 0; c < count; ++c) {
          const std::uint32_t word = even[c] | std::uint32_t{odd[c]} << 16;
          std::memcpy(dst + (i0 + c) * ld + 2 * q, &word, sizeof word);
        }
      }
    }
  });
}

}  // namespace

PackedB pack(const float* b, std::int64_t ldb, bool transposed, std::int64_t k, std::int64_t n,
             std::uint16_t* storage) {
  const std::int64_t panels = (n + PackedB::width - 1) / PackedB::width;
  const int parts =
      parallel::parts_for(panels, std::max<std::int64_t>(1, min_part_elements / (PackedB::width * k)));
  parallel::run(parts, [&](int part) {
    const auto [first, last] = parallel::range(panels, part, parts);
    pack_panels(b, ldb, transposed, k, n, storage, first, last);
  });
  return PackedB{storage, k, n};
}

void packed_gemm(std::int64_t m, const float* a, std::int64_t lda, const PackedB& b, bool add, float* c,
                 std::int64_t ldc) {
  thread_local std::vector<std::uint16_t> rows;
  const std::int64_t ld = 2 * PackedB::pairs_of(b.k);
  rows.resize(static_cast<std::size_t>(m * ld));
  for (std::int64_t i = 0; i < m; ++i) round_row(a + i * lda, b.k, rows.data() + i * ld, ld);
  multiply(m, rows.data(), ld, b, 0, (b.n + PackedB::width - 1) / PackedB::width, add, c, ldc);
}

void gemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const float* a, std::int64_t lda,
          const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc) {
  // k in chunks, C accumulating in f32 between them: the rounded copies stay bounded (full BPTT's dW_hh
  // sums over every step of the sequence), and a chunk's panel (64 KiB at hidden 1024) stays in L2.
  constexpr std::int64_t chunk = 2048;
  thread_local std::vector<std::uint16_t> a_rounded, b_packed;
  const std::int64_t kc_max = std::min(k, chunk);
  a_rounded.resize(static_cast<std::size_t>(m * 2 * PackedB::pairs_of(kc_max)));
  b_packed.resize(static_cast<std::size_t>(PackedB::size(kc_max, n)));
  // Named here: inside the parts, another thread's a_rounded would be this thread-local's name.
  std::uint16_t *rounded = a_rounded.data(), *packed_storage = b_packed.data();
  const std::int64_t tiles = (m + tile_rows - 1) / tile_rows,
                     panels = (n + PackedB::width - 1) / PackedB::width;
  // By rows of C where there are tiles enough for every part, else by panels. Either way each element of C
  // is the same sum in the same order, whatever the number of threads.
  const bool by_rows = tiles >= 2 * parallel::threads();
  for (std::int64_t k0 = 0; k0 < k; k0 += chunk) {
    const std::int64_t kc = std::min(chunk, k - k0), ld = 2 * PackedB::pairs_of(kc);
    round_rows(ta, m, kc, ta ? a + k0 * lda : a + k0, lda, rounded);
    const PackedB packed = pack(tb ? b + k0 : b + k0 * ldb, ldb, tb, kc, n, packed_storage);
    const bool add = beta != 0 || k0 > 0;
    const int parts =
        m * n * kc < min_part_elements * 64 ? 1 : parallel::parts_for(by_rows ? tiles : panels, 1);
    parallel::run(parts, [&](int part) {
      const auto [first, last] = parallel::range(by_rows ? tiles : panels, part, parts);
      if (by_rows) {
        const std::int64_t begin = first * tile_rows, end = std::min(m, last * tile_rows);
        multiply(end - begin, rounded + begin * ld, ld, packed, 0, panels, add, c + begin * ldc, ldc);
      } else {
        multiply(m, rounded, ld, packed, first, last, add, c, ldc);
      }
    });
  }
}

}  // namespace rwd::autodiff::kernels::bf16
