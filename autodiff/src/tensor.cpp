#include "rewind/autodiff/tensor.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

namespace rwd::autodiff {
namespace {

constexpr std::align_val_t tensor_alignment{64};

std::byte* allocate_zeroed(std::size_t bytes, Shape shape, DType dtype) {
  if (bytes == 0) bytes = 1;  // keep data_ non-null: has_storage() means "shaped"
  std::byte* p = nullptr;
  try {
    p = static_cast<std::byte*>(::operator new(bytes, tensor_alignment));
  } catch (const std::bad_alloc&) {
    throw AllocationError("cannot allocate " + describe_bytes(bytes) + " for a " + name_of(dtype) +
                          " tensor of shape " + shape.str());
  }
  std::memset(p, 0, bytes);
  return p;
}

template <class F>
decltype(auto) visit(DType t, F&& f) {
  if (t == DType::f32) return f(float{});
  return f(double{});
}

}  // namespace

std::string describe_bytes(std::size_t bytes) {
  char text[64];
  const double gib = static_cast<double>(bytes) / static_cast<double>(1ull << 30);
  if (gib >= 1) {
    std::snprintf(text, sizeof text, "%.1f GiB (%zu bytes)", gib, bytes);
  } else {
    std::snprintf(text, sizeof text, "%.1f MiB (%zu bytes)", static_cast<double>(bytes) / (1 << 20), bytes);
  }
  return text;
}

std::string Shape::str() const {
  std::string s("[");
  if (rank == 2) s.append(std::to_string(rows)).append(", ");
  if (rank >= 1) s.append(std::to_string(cols));
  return s.append("]");
}

void Tensor::Free::operator()(std::byte* p) const noexcept {
  ::operator delete(p, tensor_alignment);
}

Tensor::Tensor(Shape shape, DType dtype) : shape_(shape), dtype_(dtype) {
  if (shape.rows < 0 || shape.cols < 0)
    throw std::invalid_argument("Tensor: negative dimension in shape " + shape.str());
  data_.reset(allocate_zeroed(bytes(), shape_, dtype_));
}

Tensor::Tensor(const Tensor& other) : shape_(other.shape_), dtype_(other.dtype_) {
  if (!other.has_storage()) return;
  data_.reset(allocate_zeroed(bytes(), shape_, dtype_));
  std::memcpy(data_.get(), other.data_.get(), bytes());
}

Tensor& Tensor::operator=(const Tensor& other) {
  if (this != &other) {
    if (!other.has_storage()) {
      *this = Tensor();
    } else {
      resize(other.shape_, other.dtype_);
      std::memcpy(data_.get(), other.data_.get(), bytes());
    }
  }
  return *this;
}

Tensor Tensor::from(std::span<const double> values, Shape shape, DType dtype) {
  Tensor t(shape, dtype);
  if (static_cast<std::int64_t>(values.size()) != shape.numel())
    throw std::invalid_argument("Tensor::from: " + std::to_string(values.size()) + " values for shape " +
                                shape.str() + " (" + std::to_string(shape.numel()) + " elements)");
  for (std::size_t i = 0; i < values.size(); ++i) t.set(static_cast<std::int64_t>(i), values[i]);
  return t;
}

Tensor Tensor::from(std::initializer_list<double> values, Shape shape, DType dtype) {
  return from(std::span<const double>(values.begin(), values.size()), shape, dtype);
}

double Tensor::get(std::int64_t i) const {
  if (i < 0 || i >= numel())
    throw std::out_of_range("Tensor: index " + std::to_string(i) + " out of range for shape " + shape_.str());
  return visit(dtype_, [&](auto zero) {
    return static_cast<double>(reinterpret_cast<const decltype(zero)*>(data_.get())[i]);
  });
}

void Tensor::set(std::int64_t i, double value) {
  if (i < 0 || i >= numel())
    throw std::out_of_range("Tensor: index " + std::to_string(i) + " out of range for shape " + shape_.str());
  visit(dtype_, [&](auto zero) {
    using T = decltype(zero);
    reinterpret_cast<T*>(data_.get())[i] = static_cast<T>(value);
  });
}

void Tensor::fill(double value) {
  visit(dtype_, [&](auto zero) {
    using T = decltype(zero);
    std::fill_n(reinterpret_cast<T*>(data_.get()), numel(), static_cast<T>(value));
  });
}

void Tensor::resize(Shape shape, DType dtype) {
  const std::size_t new_bytes = static_cast<std::size_t>(shape.numel()) * size_of(dtype);
  if (!has_storage() || new_bytes != bytes())
    data_.reset(allocate_zeroed(new_bytes, shape, dtype));  // may throw: nothing changed yet
  shape_ = shape;
  dtype_ = dtype;
}

Tensor Tensor::to(DType dtype) const {
  Tensor out(shape_, dtype);
  for (std::int64_t i = 0; i < numel(); ++i) out.set(i, get(i));
  return out;
}

void Tensor::check_dtype(DType requested) const {
  if (requested != dtype_)
    throw std::invalid_argument(std::string("Tensor: requested ") + name_of(requested) + " data of a " +
                                name_of(dtype_) + " tensor of shape " + shape_.str());
}

}  // namespace rwd::autodiff
