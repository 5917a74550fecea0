// Dense row-major tensors of rank 0, 1 or 2, owning their storage. Values inside a tape live in the tape's
// arena instead (see tape.hpp); a Tensor is what lives outside it: parameters, inputs, carried state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "rewind/autodiff/export.hpp"

namespace rwd::autodiff {

enum class DType : std::uint8_t { f32, f64 };

constexpr std::size_t size_of(DType t) {
  return t == DType::f32 ? sizeof(float) : sizeof(double);
}
constexpr const char* name_of(DType t) {
  return t == DType::f32 ? "f32" : "f64";
}

// Memory that could not be had, with what it was for and how much: a std::bad_alloc names neither.
class REWIND_AUTODIFF_EXPORT AllocationError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
// "1.5 GiB (1610612736 bytes)": sizes in messages.
REWIND_AUTODIFF_EXPORT std::string describe_bytes(std::size_t bytes);

template <class T>
constexpr DType dtype_of() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "rewind tensors hold float or double");
  return std::is_same_v<T, float> ? DType::f32 : DType::f64;
}

// A rank-1 tensor of n elements is stored as one row (1 x n); a scalar as 1 x 1 with rank 0.
struct Shape {
  std::int64_t rows = 1;
  std::int64_t cols = 1;
  int rank = 2;

  static constexpr Shape scalar() { return {1, 1, 0}; }
  static constexpr Shape vector(std::int64_t n) { return {1, n, 1}; }
  static constexpr Shape matrix(std::int64_t r, std::int64_t c) { return {r, c, 2}; }

  constexpr std::int64_t numel() const { return rows * cols; }
  constexpr bool operator==(const Shape&) const = default;
  REWIND_AUTODIFF_EXPORT std::string str() const;  // "[]", "[4]", "[3, 4]"
};

class REWIND_AUTODIFF_EXPORT Tensor {
 public:
  Tensor() = default;                // 0 x 0, no storage: every access is a no-op or a range error
  Tensor(Shape shape, DType dtype);  // zero-filled
  Tensor(const Tensor& other);
  Tensor& operator=(const Tensor& other);
  Tensor(Tensor&&) noexcept = default;
  Tensor& operator=(Tensor&&) noexcept = default;
  ~Tensor() = default;

  // Values given in row-major order, converted to dtype; their count must match the shape.
  static Tensor from(std::span<const double> values, Shape shape, DType dtype);
  static Tensor from(std::initializer_list<double> values, Shape shape, DType dtype);

  Shape shape() const { return shape_; }
  DType dtype() const { return dtype_; }
  std::int64_t numel() const { return shape_.numel(); }
  std::size_t bytes() const { return static_cast<std::size_t>(numel()) * size_of(dtype_); }
  // False for a default-constructed or moved-from tensor; a shaped tensor has storage even with 0 elements.
  bool has_storage() const { return data_ != nullptr; }

  // Typed access; throws std::invalid_argument if T does not match dtype().
  template <class T>
  T* data() {
    check_dtype(dtype_of<T>());
    return reinterpret_cast<T*>(data_.get());
  }
  template <class T>
  const T* data() const {
    check_dtype(dtype_of<T>());
    return reinterpret_cast<const T*>(data_.get());
  }
  void* raw() { return data_.get(); }
  const void* raw() const { return data_.get(); }

  // Element access in double regardless of dtype (for tests, checks and I/O, not for kernels).
  double get(std::int64_t flat_index) const;
  void set(std::int64_t flat_index, double value);
  double at(std::int64_t row, std::int64_t col) const { return get(row * shape_.cols + col); }

  void fill(double value);
  // Reshapes this tensor in place, reusing its buffer when the byte size is unchanged.
  void resize(Shape shape, DType dtype);
  Tensor to(DType dtype) const;

 private:
  struct Free {
    void operator()(std::byte* p) const noexcept;
  };
  void check_dtype(DType requested) const;

  Shape shape_ = Shape::matrix(0, 0);
  DType dtype_ = DType::f32;
  std::unique_ptr<std::byte[], Free> data_;
};

}  // namespace rwd::autodiff
