#include "rewind/autodiff/arena.hpp"

#include "rewind/autodiff/tensor.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>

namespace rwd::autodiff {
namespace {
constexpr std::size_t max_block_growth_bytes = std::size_t{64} << 20;

std::size_t align_up(std::size_t n, std::size_t align) {
  return (n + align - 1) & ~(align - 1);
}

// Blocks of 2 MiB and more start on a 2 MiB boundary and are advised as transparent huge pages (granted where
// the kernel's setting is madvise or always): a window that first touches its tape faults once per 2 MiB
// instead of once per 4 KiB page. docs/arena.md.
constexpr std::size_t huge_page = std::size_t{2} << 20;

std::byte* allocate_block(std::size_t size) {
  const std::size_t align = size >= huge_page ? huge_page : Arena::max_align;
  if (size > SIZE_MAX - align) return nullptr;  // rounding up would wrap around
  void* data = std::aligned_alloc(align, align_up(size, align));
#ifdef MADV_HUGEPAGE
  if (data != nullptr && align == huge_page) ::madvise(data, align_up(size, align), MADV_HUGEPAGE);
#endif
  return static_cast<std::byte*>(data);
}
}  // namespace

Arena::Arena(std::size_t first_block_bytes)
    : next_block_bytes_(std::max<std::size_t>(first_block_bytes, 4096)) {}

Arena::~Arena() {
  for (const std::vector<Block>* list : {&blocks_, &large_})
    for (const Block& b : *list) std::free(b.data);
}

Arena::Block Arena::new_block(std::size_t size) {
  std::byte* data = allocate_block(size);
  if (data == nullptr) {
    throw AllocationError("tape arena: cannot allocate a block of " + describe_bytes(size) + " (" +
                          describe_bytes(reserved_) + " already reserved)");
  }
  reserved_ += size;
  ++block_allocations_;
  return Block{data, size};
}

// Like the small blocks, large ones are kept for the next window. Each request takes the smallest unused
// block that fits; when none does, the smallest unused one is replaced rather than kept beside a new one, so
// windows of varying length do not pile up blocks that are too small (reserved stays near the largest
// window's need, tests/test_hardening.cpp).
void* Arena::allocate_large(std::size_t bytes) {
  std::size_t best = large_.size(), smallest = large_.size();
  for (std::size_t i = next_large_; i < large_.size(); ++i) {
    if (large_[i].size >= bytes && (best == large_.size() || large_[i].size < large_[best].size)) best = i;
    if (smallest == large_.size() || large_[i].size < large_[smallest].size) smallest = i;
  }
  if (best == large_.size()) {
    large_.reserve(large_.size() + 1);  // so the push_back below cannot throw and leak the block
    const Block fresh = new_block(align_up(bytes, max_align));
    if (smallest != large_.size()) {
      std::free(large_[smallest].data);
      reserved_ -= large_[smallest].size;
      large_[smallest] = fresh;
      best = smallest;
    } else {
      large_.push_back(fresh);
      best = large_.size() - 1;
    }
  }
  std::swap(large_[best], large_[next_large_]);
  in_use_ += bytes;
  peak_ = std::max(peak_, in_use_);
  return large_[next_large_++].data;
}

void* Arena::allocate(std::size_t bytes, std::size_t align) {
  if (bytes >= large_request_bytes && align <= max_align && (align & (align - 1)) == 0)
    return allocate_large(bytes);
  if (!blocks_.empty()) {
    const Block& b = blocks_[current_];
    const std::size_t start = align_up(offset_, align);
    if (start + bytes <= b.size) {
      in_use_ += start + bytes - offset_;
      peak_ = std::max(peak_, in_use_);
      offset_ = start + bytes;
      return b.data + start;
    }
  }
  return allocate_slow(bytes, align);
}

// Moves to the next kept block, or inserts a new one there when the next is missing or too small. A window
// recorded again makes the same requests in the same order, so after one pass every request fits.
void* Arena::allocate_slow(std::size_t bytes, std::size_t align) {
  if (align > max_align || (align & (align - 1)) != 0)
    throw std::invalid_argument("Arena: unsupported alignment " + std::to_string(align));
  const std::size_t next = blocks_.empty() ? 0 : current_ + 1;
  // The tail of the block we leave is wasted for this window; count it so in_use stays honest.
  if (!blocks_.empty()) in_use_ += blocks_[current_].size - offset_;
  if (next == blocks_.size() || blocks_[next].size < bytes) {
    blocks_.reserve(blocks_.size() + 1);  // so the insert below cannot throw and leak the block
    blocks_.insert(blocks_.begin() + static_cast<std::ptrdiff_t>(next),
                   new_block(std::max(next_block_bytes_, align_up(bytes, max_align))));
    next_block_bytes_ = std::min(next_block_bytes_ * 2, std::max(max_block_growth_bytes, next_block_bytes_));
  }
  current_ = next;
  offset_ = bytes;
  in_use_ += bytes;
  peak_ = std::max(peak_, in_use_);
  return blocks_[current_].data;
}

void Arena::reset() noexcept {
  current_ = 0;
  offset_ = 0;
  next_large_ = 0;
  in_use_ = 0;
}

}  // namespace rwd::autodiff
