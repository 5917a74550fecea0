// C = A B + beta C for the recurrent products of the sequence ops: few rows (a batch, or half of one) times
// W_hh or its transpose, the same B for every step of a window. OpenBLAS packs B again on every call,
// which at 16-32 rows costs about as much as the product itself; here B is packed once per window into
// column panels, and a register-blocked kernel streams each panel from cache for every step. The kernel is
// written with GCC vector extensions, so it compiles to AVX-512, AVX2 or SSE as REWIND_ARCH allows.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace rwd::autodiff::kernels {

#if defined(__AVX512F__)
inline constexpr int vector_bytes = 64;
inline constexpr int panel_rows = 8;  // 8 x 2 accumulators + 2 panel vectors: within 32 registers
#elif defined(__AVX__)
inline constexpr int vector_bytes = 32;
inline constexpr int panel_rows = 6;  // 12 accumulators + 2 panel vectors + 1 broadcast: 16 registers
#else
inline constexpr int vector_bytes = 16;
inline constexpr int panel_rows = 6;
#endif

// GCC vector types cannot depend on a template parameter: one per element type.
typedef float FloatVector __attribute__((vector_size(vector_bytes)));
typedef double DoubleVector __attribute__((vector_size(vector_bytes)));

template <class T>
struct PackedB {
  using Vector = std::conditional_t<std::is_same_v<T, float>, FloatVector, DoubleVector>;
  static constexpr std::int64_t lanes = vector_bytes / sizeof(T);
  static constexpr std::int64_t width = 2 * lanes;  // columns per panel

  // Elements of storage that pack() needs for B [k, n].
  static std::int64_t size(std::int64_t k, std::int64_t n) { return (n + width - 1) / width * width * k; }

  // Packs B [k, n]: b itself (row stride ldb) or, when transposed, the transpose of b [n, k]. Panel p holds
  // columns [p width, (p + 1) width) row after row, zero-padded. (kernels::pack shares the panels out.)
  PackedB(const T* b, std::int64_t ldb, bool transposed, std::int64_t k, std::int64_t n, T* storage)
      : data(storage), k(k), n(n) {
    pack_panels(b, ldb, transposed, k, n, storage, 0, panels(n));
  }

  static std::int64_t panels(std::int64_t n) { return (n + width - 1) / width; }

  // Panels [first, last) of B packed into storage, as the constructor packs them.
  static void pack_panels(const T* b, std::int64_t ldb, bool transposed, std::int64_t k, std::int64_t n,
                          T* storage, std::int64_t first, std::int64_t last) {
    for (std::int64_t p = first; p < last; ++p) {
      T* panel = storage + p * width * k;
      const std::int64_t column = p * width, cols = std::min(width, n - column);
      if (!transposed) {
        for (std::int64_t kk = 0; kk < k; ++kk) {
          T* row = panel + kk * width;
          std::copy_n(b + kk * ldb + column, cols, row);
          std::fill(row + cols, row + width, T(0));
        }
        continue;
      }
      // Column j of the panel is row `column + j` of b. It is read in runs of `run` elements, so that the
      // panel rows being written (a few KiB) stay in L1 while every source row streams: 7x faster than
      // reading one element of each source row per panel row.
      constexpr std::int64_t run = 16;
      for (std::int64_t k0 = 0; k0 < k; k0 += run) {
        const std::int64_t k1 = std::min(k, k0 + run);
        for (std::int64_t j = 0; j < cols; ++j) {
          const T* source = b + (column + j) * ldb;
          for (std::int64_t kk = k0; kk < k1; ++kk) panel[kk * width + j] = source[kk];
        }
        for (std::int64_t kk = k0; kk < k1; ++kk)
          std::fill(panel + kk * width + cols, panel + (kk + 1) * width, T(0));
      }
    }
  }

  // B packed before (by the constructor above, into `packed`).
  PackedB(const T* packed, std::int64_t k, std::int64_t n) : data(packed), k(k), n(n) {}

  const T* data;
  std::int64_t k, n;
};

namespace detail {

template <class T, int Rows>
void packed_tile(const PackedB<T>& b, const T* panel, std::int64_t cols, const T* a, std::int64_t lda,
                 bool add, T* c, std::int64_t ldc) {
  using V = typename PackedB<T>::Vector;
  constexpr std::int64_t lanes = PackedB<T>::lanes;
  V acc[Rows][2] = {};
  for (std::int64_t kk = 0; kk < b.k; ++kk) {
    V b0, b1;
    std::memcpy(&b0, panel + kk * PackedB<T>::width, sizeof(V));
    std::memcpy(&b1, panel + kk * PackedB<T>::width + lanes, sizeof(V));
#pragma GCC unroll 8
    for (int i = 0; i < Rows; ++i) {
      const T ai = a[i * lda + kk];
      acc[i][0] += b0 * ai;
      acc[i][1] += b1 * ai;
    }
  }
  for (int i = 0; i < Rows; ++i) {
    T* row = c + i * ldc;
    if (cols == PackedB<T>::width) {
      for (int v = 0; v < 2; ++v) {
        V out = acc[i][v];
        if (add) {
          V old;
          std::memcpy(&old, row + v * lanes, sizeof(V));
          out += old;
        }
        std::memcpy(row + v * lanes, &out, sizeof(V));
      }
    } else {
      for (std::int64_t j = 0; j < cols; ++j) {
        const T value = acc[i][j / lanes][j % lanes];
        row[j] = add ? row[j] + value : value;
      }
    }
  }
}

template <class T, int Rows = panel_rows>
void packed_rest(int rows, const PackedB<T>& b, const T* panel, std::int64_t cols, const T* a,
                 std::int64_t lda, bool add, T* c, std::int64_t ldc) {
  if constexpr (Rows > 0) {
    if (rows == Rows) return packed_tile<T, Rows>(b, panel, cols, a, lda, add, c, ldc);
    packed_rest<T, Rows - 1>(rows, b, panel, cols, a, lda, add, c, ldc);
  }
}

}  // namespace detail

// C [m, b.n] (row stride ldc) = A [m, b.k] (row stride lda) B, plus C when add.
// Rows go in blocks of 8 tiles, so that a block of C and A stays in cache while every panel passes by.
template <class T>
void packed_gemm(std::int64_t m, const T* a, std::int64_t lda, const PackedB<T>& b, bool add, T* c,
                 std::int64_t ldc) {
  constexpr std::int64_t block = 8 * panel_rows;
  for (std::int64_t r0 = 0; r0 < m; r0 += block) {
    const std::int64_t r1 = std::min(m, r0 + block);
    for (std::int64_t p = 0; p * PackedB<T>::width < b.n; ++p) {
      const T* panel = b.data + p * PackedB<T>::width * b.k;
      const std::int64_t first = p * PackedB<T>::width, cols = std::min(PackedB<T>::width, b.n - first);
      std::int64_t r = r0;
      for (; r + panel_rows <= r1; r += panel_rows)
        detail::packed_tile<T, panel_rows>(b, panel, cols, a + r * lda, lda, add, c + r * ldc + first, ldc);
      if (r < r1)
        detail::packed_rest<T>(static_cast<int>(r1 - r), b, panel, cols, a + r * lda, lda, add,
                               c + r * ldc + first, ldc);
    }
  }
}

}  // namespace rwd::autodiff::kernels
