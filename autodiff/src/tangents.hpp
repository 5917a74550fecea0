// The tangents of one Tape::jvp pass (forward mode; docs/forward_mode.md): a buffer per node that the
// directions reach, found by node id, null where the tangent is zero. A view's tangent is its part of the
// viewed tensor's tangent, as its value is its part of the viewed value.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "node.hpp"

namespace rwd::autodiff {

class Tangents {
 public:
  Tangents(std::size_t nodes, DType dtype) : of_(nodes, nullptr), dtype_(dtype) {}

  // n's tangent, or null when it is zero.
  template <class T>
  const T* of(const Node* n) const {
    return static_cast<const T*>(of_[n->id]);
  }
  // A zero-filled buffer for n's tangent, which its rule then fills.
  template <class T>
  T* make(const Node* n) {
    const std::size_t bytes = sizeof(T) * static_cast<std::size_t>(n->shape.numel());
    storage_.push_back(std::make_unique<std::byte[]>(bytes));  // value-initialised: zeros
    of_[n->id] = storage_.back().get();
    return reinterpret_cast<T*>(storage_.back().get());
  }
  // A view's tangent: `offset` elements into the viewed tensor's (none when that is zero).
  template <class T>
  void view(const Node* n, const Node* viewed, std::int64_t offset) {
    if (const T* t = of<T>(viewed)) of_[n->id] = const_cast<T*>(t + offset);
  }
  void set(const Node* n, void* tangent) { of_[n->id] = tangent; }
  bool reaches(const Node* n) const {
    for (std::uint32_t i = 0; i < n->n_inputs; ++i)
      if (of_[n->inputs[i]->id] != nullptr) return true;
    return false;
  }
  DType dtype() const { return dtype_; }

 private:
  std::vector<void*> of_;
  std::vector<std::unique_ptr<std::byte[]>> storage_;
  DType dtype_;
};

}  // namespace rwd::autodiff
