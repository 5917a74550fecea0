// Bump allocator behind the tape. Blocks are kept across reset(), so a window recorded again after a
// reset reuses the same memory and performs no heap allocation. See docs/arena.md.
#pragma once

#include <cstddef>
#include <vector>

#include "rewind/autodiff/export.hpp"

namespace rwd::autodiff {

class REWIND_AUTODIFF_EXPORT Arena {
 public:
  static constexpr std::size_t default_block_bytes = std::size_t{1} << 20;

  explicit Arena(std::size_t first_block_bytes = default_block_bytes);
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  // Memory is uninitialised; align must be a power of two no larger than max_align.
  void* allocate(std::size_t bytes, std::size_t align);
  template <class T>
  T* allocate_array(std::size_t count) {
    return static_cast<T*>(allocate(count * sizeof(T), alignof(T)));
  }
  void reset() noexcept;  // O(1): every block stays reserved

  std::size_t in_use_bytes() const { return in_use_; }
  std::size_t peak_bytes() const { return peak_; }
  void reset_peak() { peak_ = in_use_; }
  std::size_t reserved_bytes() const { return reserved_; }
  // Number of blocks ever obtained from the heap: flat once a repeated workload has warmed up.
  std::size_t block_allocations() const { return block_allocations_; }

  static constexpr std::size_t max_align = 64;
  // Requests at least this big get a block of their own (kept too), so a window-sized tensor does not strand
  // the unused tail of the current block.
  static constexpr std::size_t large_request_bytes = std::size_t{256} << 10;

 private:
  struct Block {
    std::byte* data;
    std::size_t size;
  };
  void* allocate_slow(std::size_t bytes, std::size_t align);
  void* allocate_large(std::size_t bytes);
  Block new_block(std::size_t size);

  std::vector<Block> blocks_;
  std::size_t current_ = 0;   // index into blocks_; blocks_ is empty until the first allocation
  std::size_t offset_ = 0;    // bump offset in blocks_[current_]
  std::vector<Block> large_;  // blocks of large requests, handed out in order
  std::size_t next_large_ = 0;
  std::size_t next_block_bytes_;
  std::size_t in_use_ = 0;
  std::size_t peak_ = 0;
  std::size_t reserved_ = 0;
  std::size_t block_allocations_ = 0;
};

}  // namespace rwd::autodiff
