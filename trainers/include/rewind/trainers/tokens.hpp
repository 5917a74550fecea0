// Text as tokens (bytes, UTF-8 characters or words) and pre-tokenised files of token ids read in place.
// See docs/data.md.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "rewind/trainers/data.hpp"
#include "rewind/trainers/export.hpp"

namespace rwd::trainers {

// bytes: every byte a symbol (rewind's original character level); chars: UTF-8 code points; words: Python's
// str.split() of each line (universal newlines) with <eos> at its end (PyTorch word_language_model's
// convention).
enum class TokenMode { bytes, chars, words };
REWIND_TRAINERS_EXPORT TokenMode token_mode(const std::string& name);  // throws naming --tokens
REWIND_TRAINERS_EXPORT const char* name_of(TokenMode mode);

inline constexpr std::string_view end_of_line_token = "<eos>";
inline constexpr std::string_view unknown_token = "<unk>";

struct REWIND_TRAINERS_EXPORT Vocabulary {
  TokenMode mode = TokenMode::bytes;
  std::vector<std::string> symbols;  // symbols[i] is token i

  // The symbols of the training texts `texts` (counted over all of them; names[i] names texts[i] in errors).
  // bytes and chars: every symbol, in byte order (bytes: CharVocabulary's order, so old checkpoints keep
  // their ids). words: by decreasing count, ties in byte order; max_symbols > 0 caps the size, <unk> included
  // (the max_symbols - 1 most frequent words and <unk> for the rest). Invalid UTF-8 (chars, words) is an
  // error naming the text and the byte offset.
  static Vocabulary of(TokenMode mode, const std::vector<std::string_view>& texts,
                       const std::vector<std::string>& names, std::int64_t max_symbols = 0);
  // Makes the vocabulary read `text` (held-out data): its symbols that training lacks become <unk>, which is
  // appended when the vocabulary has none (under a cap, in place of the least frequent word). Returns how
  // many symbols of text are read as <unk>. Any mode: held-out text never refuses a run.
  std::int64_t cover(std::string_view text, const std::string& source, std::int64_t max_symbols = 0);
  std::int64_t size() const { return static_cast<std::int64_t>(symbols.size()); }
  std::int32_t unknown() const;  // the id of <unk>, or -1
  struct EncodeOptions {
    bool skip_unknown = false;  // without <unk>: drop symbols outside the vocabulary instead of failing
    bool final_eos = true;      // words: <eos> also after a last line without a newline (a file, not a prime)
    std::int64_t* skipped = nullptr;     // symbols dropped
    std::int64_t* as_unknown = nullptr;  // symbols outside the vocabulary read as <unk>
  };
  // Errors name `source` and the byte offset: invalid UTF-8, or a symbol outside a vocabulary without <unk>
  // (one with <unk> reads every such symbol as <unk>).
  std::vector<std::int32_t> encode(std::string_view text, const std::string& source) const {
    return encode(text, source, EncodeOptions{});
  }
  std::vector<std::int32_t> encode(std::string_view text, const std::string& source,
                                   const EncodeOptions& options) const;
  // words: joined by spaces, <eos> as a line end.
  std::string decode(std::span<const std::int32_t> ids) const;

  // encode() piece after piece, its index of the symbols built once: a stream's lines as they arrive.
  class REWIND_TRAINERS_EXPORT Encoder {
   public:
    explicit Encoder(const Vocabulary& vocabulary);
    // Appends the ids of text to ids, as encode(text, source, options) returns them.
    void encode(std::string_view text, const std::string& source, const EncodeOptions& options,
                std::vector<std::int32_t>& ids) const;

   private:
    const Vocabulary* vocabulary_;
    std::int32_t unknown_;
    std::vector<std::int32_t> byte_index_;                 // bytes: by byte value, -1 outside
    std::unordered_map<std::string, std::int32_t> index_;  // chars and words
  };

 private:
  void cap(std::int64_t max_symbols);
};

enum class TokenDType { uint16, uint32 };
REWIND_TRAINERS_EXPORT TokenDType token_dtype(const std::string& name);  // throws naming --token-dtype
REWIND_TRAINERS_EXPORT const char* name_of(TokenDType dtype);
REWIND_TRAINERS_EXPORT std::size_t width_of(TokenDType dtype);

// A file of flat little-endian token ids (nanoGPT's train.bin), memory-mapped read-only: nothing is copied,
// pages come and go as the kernel sees fit, so a corpus larger than memory can be read. Opening checks the
// size is a multiple of the width and every id is below `vocab`, naming the file and the offending offset.
class REWIND_TRAINERS_EXPORT TokenFile {
 public:
  TokenFile(const std::string& path, TokenDType dtype, std::int64_t vocab);
  ~TokenFile();
  TokenFile(const TokenFile&) = delete;
  TokenFile& operator=(const TokenFile&) = delete;

  std::int64_t size() const { return count_; }  // tokens
  std::int64_t vocab_size() const { return vocab_; }
  std::size_t width() const { return width_; }  // bytes per id
  const std::string& path() const { return path_; }
  // Drops the whole pages of tokens [begin, end) from this process's resident set (they stay in the page
  // cache, and a later read maps them again): what a reader has passed need not stay resident.
  void release(std::int64_t begin, std::int64_t end) const;
  std::int32_t operator[](std::int64_t i) const { return static_cast<std::int32_t>(id(i)); }
  std::uint32_t id(std::int64_t i) const {  // as stored
    const unsigned char* p = data_ + static_cast<std::size_t>(i) * width_;
    std::uint32_t v = 0;
    for (std::size_t k = width_; k-- > 0;) v = v << 8 | p[k];
    return v;
  }

 private:
  std::string path_;
  const unsigned char* data_ = nullptr;
  std::size_t bytes_ = 0, width_ = 0;
  std::int64_t count_ = 0, vocab_ = 0;
};

// Tokens [begin, end) of a file as `batch` contiguous streams (text_streams' layout), read in place: step(t)
// gathers its [B] inputs and targets into buffers the dataset owns, so a Step's spans stay valid until the
// next step() on this dataset, and stepping allocates nothing. Every release_every steps, the pages each
// stream has passed are released, so resident memory stays near B x release_every tokens whatever the file's
// size.
class REWIND_TRAINERS_EXPORT TokenFileStreams : public Dataset {
 public:
  TokenFileStreams(std::shared_ptr<const TokenFile> file, std::int64_t begin, std::int64_t end,
                   std::int64_t batch);
  std::int64_t batch() const override { return batch_; }
  std::int64_t steps() const override { return steps_; }
  Step step(std::int64_t t) const override;
  std::int64_t vocab_size() const override { return file_->vocab_size(); }
  std::int64_t input_size() const override { return 0; }
  std::int64_t output_size() const override { return file_->vocab_size(); }

 private:
  std::shared_ptr<const TokenFile> file_;
  std::int64_t begin_, batch_, steps_;
  mutable std::vector<std::int32_t> inputs_, targets_;
  std::int64_t release_every_;
};

// Writes ids as a token file, atomically; an id that does not fit the width is an error naming the file.
REWIND_TRAINERS_EXPORT void write_token_file(const std::string& path, std::span<const std::int32_t> ids,
                                             TokenDType dtype);

}  // namespace rwd::trainers
