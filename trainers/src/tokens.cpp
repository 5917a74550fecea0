#include "rewind/trainers/tokens.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <stdexcept>
#include <unordered_map>

#include "rewind/models/atomic_file.hpp"

namespace rwd::trainers {

TokenMode token_mode(const std::string& name) {
  if (name == "bytes") return TokenMode::bytes;
  if (name == "chars") return TokenMode::chars;
  if (name == "words") return TokenMode::words;
  throw std::invalid_argument("--tokens must be bytes, chars or words, got '" + name + "'");
}

const char* name_of(TokenMode mode) {
  return mode == TokenMode::bytes ? "bytes" : mode == TokenMode::chars ? "chars" : "words";
}

namespace {

// A file's name in quotes; a source that names itself with quotes already ("'rows.txt' line 2") as it is.
std::string quoted(const std::string& source) {
  return source.starts_with('\'') ? source : "'" + source + "'";
}

std::string hex_byte(unsigned char b) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02x", b);
  return buf;
}

// Length of the well-formed UTF-8 sequence at s[i] (RFC 3629: no overlong forms, no surrogates, nothing past
// U+10FFFF), or 0.
std::size_t utf8_length(std::string_view s, std::size_t i) {
  const auto at = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = at(i);
  if (c < 0x80) return 1;
  std::size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // the second byte's range
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;  // overlong
    if (c == 0xED) hi = 0x9F;  // surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;  // overlong
    if (c == 0xF4) hi = 0x8F;  // past U+10FFFF
  } else {
    return 0;
  }
  if (i + n > s.size() || at(i + 1) < lo || at(i + 1) > hi) return 0;
  for (std::size_t k = 2; k < n; ++k)
    if ((at(i + k) & 0xC0) != 0x80) return 0;
  return n;
}

void check_utf8(std::string_view text, const std::string& source) {
  for (std::size_t i = 0; i < text.size();) {
    const std::size_t n = utf8_length(text, i);
    if (n == 0)
      throw std::invalid_argument(quoted(source) + ": invalid UTF-8 at byte offset " + std::to_string(i) +
                                  " (byte " + hex_byte(static_cast<unsigned char>(text[i])) +
                                  "); --tokens bytes reads any file");
    i += n;
  }
}

// The code point of the well-formed UTF-8 sequence of n bytes at s[i].
char32_t code_point(std::string_view s, std::size_t i, std::size_t n) {
  const auto at = [&](std::size_t k) { return static_cast<char32_t>(static_cast<unsigned char>(s[k])); };
  if (n == 1) return at(i);
  char32_t c = at(i) & (0x7Fu >> n);
  for (std::size_t k = 1; k < n; ++k) c = c << 6 | (at(i + k) & 0x3F);
  return c;
}

// What Python's str.split() splits on (str.isspace(): the Unicode White_Space separators and the ASCII
// information separators 0x1C-0x1F), so that words are the words of word_language_model.
bool is_python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

// The end of the line that starts at i, and where the next one starts: a line ends at \n, \r\n or a lone \r,
// as Python reads a text file (universal newlines).
std::pair<std::size_t, std::size_t> line_end(std::string_view text, std::size_t i) {
  const std::size_t end = std::min(text.find_first_of("\r\n", i), text.size());
  if (end == text.size()) return {end, end};
  return {end, end + (text[end] == '\r' && end + 1 < text.size() && text[end + 1] == '\n' ? 2 : 1)};
}

// Calls f(symbol, byte offset) for each symbol of text in order. words: line.split() + ['<eos>'] for each
// line, as word_language_model reads a file (a last line without a newline ends with <eos> too, when
// final_eos).
void for_each_symbol(TokenMode mode, std::string_view text, const std::string& source, bool final_eos,
                     const std::function<void(std::string_view, std::size_t)>& f) {
  if (mode == TokenMode::bytes) {
    for (std::size_t i = 0; i < text.size(); ++i) f(text.substr(i, 1), i);
    return;
  }
  check_utf8(text, source);
  if (mode == TokenMode::chars) {
    for (std::size_t i = 0; i < text.size();) {
      const std::size_t n = utf8_length(text, i);
      f(text.substr(i, n), i);
      i += n;
    }
    return;
  }
  std::size_t i = 0;
  while (i < text.size()) {
    const auto [end, next] = line_end(text, i);
    std::size_t word = end;  // where the current word began; end: between words
    for (std::size_t j = i; j < end;) {
      const std::size_t n = utf8_length(text, j);
      const bool space = is_python_space(code_point(text, j, n));
      if (space && word < end) f(text.substr(word, j - word), word), word = end;
      if (!space && word == end) word = j;
      j += n;
    }
    if (word < end) f(text.substr(word, end - word), word);
    if (end < text.size() || final_eos) f(end_of_line_token, end);
    i = next;
  }
}

}  // namespace

Vocabulary Vocabulary::of(TokenMode mode, const std::vector<std::string_view>& texts,
                          const std::vector<std::string>& names, std::int64_t max_symbols) {
  Vocabulary v;
  v.mode = mode;
  if (max_symbols < 0) throw std::invalid_argument("--vocab-size must be >= 0 (0: every word)");
  if (mode == TokenMode::bytes) {
    std::string all;
    for (std::string_view t : texts) all.append(t);
    for (char c : CharVocabulary::of(all).symbols) v.symbols.emplace_back(1, c);
    return v;
  }
  std::unordered_map<std::string, std::int64_t> counts;
  for (std::size_t i = 0; i < texts.size(); ++i)
    for_each_symbol(mode, texts[i], i < names.size() ? names[i] : "text", true,
                    [&](std::string_view s, std::size_t) { ++counts[std::string(s)]; });
  std::vector<std::pair<std::string, std::int64_t>> ranked(counts.begin(), counts.end());
  if (mode == TokenMode::chars) {
    std::sort(ranked.begin(), ranked.end());  // byte order of UTF-8 is code point order
  } else {
    std::sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) {
      return a.second != b.second ? a.second > b.second : a.first < b.first;
    });
  }
  for (auto& [symbol, count] : ranked) v.symbols.push_back(std::move(symbol));
  if (mode == TokenMode::words && max_symbols > 0) v.cap(max_symbols);
  return v;
}

void Vocabulary::cap(std::int64_t max_symbols) {
  if (size() <= max_symbols) return;
  // The most frequent words and <unk>, wherever its own count ranks it (Penn Treebank's text holds it).
  std::vector<std::string> kept;
  bool has_unknown = false;
  for (std::string& s : symbols) {
    if (static_cast<std::int64_t>(kept.size()) + (has_unknown ? 0 : 1) >= max_symbols) break;
    has_unknown = has_unknown || s == unknown_token;
    kept.push_back(std::move(s));
  }
  if (!has_unknown) kept.emplace_back(unknown_token);
  symbols = std::move(kept);
}

std::int32_t Vocabulary::unknown() const {
  const auto it = std::find(symbols.begin(), symbols.end(), unknown_token);
  return it == symbols.end() ? -1 : static_cast<std::int32_t>(it - symbols.begin());
}

std::int64_t Vocabulary::cover(std::string_view text, const std::string& source, std::int64_t max_symbols) {
  std::int64_t skipped = 0, as_unknown = 0;
  (void)encode(text, source, {.skip_unknown = true, .skipped = &skipped, .as_unknown = &as_unknown});
  if (skipped == 0) return as_unknown;
  // Words over the cap make room by dropping the least frequent, which cap() would have dropped first.
  if (max_symbols > 0 && size() >= max_symbols) symbols.resize(static_cast<std::size_t>(max_symbols - 1));
  symbols.emplace_back(unknown_token);
  return skipped;
}

std::vector<std::int32_t> Vocabulary::encode(std::string_view text, const std::string& source,
                                             const EncodeOptions& options) const {
  std::vector<std::int32_t> ids;
  if (mode == TokenMode::bytes) ids.reserve(text.size());
  Encoder(*this).encode(text, source, options, ids);
  return ids;
}

Vocabulary::Encoder::Encoder(const Vocabulary& vocabulary)
    : vocabulary_(&vocabulary), unknown_(vocabulary.unknown()) {
  if (vocabulary.mode == TokenMode::bytes) {
    byte_index_.assign(256, -1);
    for (std::size_t i = 0; i < vocabulary.symbols.size(); ++i)
      if (vocabulary.symbols[i].size() == 1)
        byte_index_[static_cast<unsigned char>(vocabulary.symbols[i][0])] = static_cast<std::int32_t>(i);
  } else {
    for (std::size_t i = 0; i < vocabulary.symbols.size(); ++i)
      index_.emplace(vocabulary.symbols[i], static_cast<std::int32_t>(i));
  }
}

void Vocabulary::Encoder::encode(std::string_view text, const std::string& source,
                                 const EncodeOptions& options, std::vector<std::int32_t>& ids) const {
  const TokenMode mode = vocabulary_->mode;
  std::int64_t skipped = 0, as_unknown = 0;
  // A symbol outside the vocabulary: <unk> when there is one, else dropped or refused.
  const auto outside = [&](const auto& describe) {
    if (unknown_ >= 0) {
      ids.push_back(unknown_);
      ++as_unknown;
    } else if (options.skip_unknown) {
      ++skipped;
    } else {
      throw std::invalid_argument(quoted(source) + ": " + describe() + " is not in the model's vocabulary");
    }
  };
  if (mode == TokenMode::bytes) {
    for (std::size_t i = 0; i < text.size(); ++i) {
      const std::int32_t id = byte_index_[static_cast<unsigned char>(text[i])];
      if (id >= 0) {
        ids.push_back(id);
        continue;
      }
      // CharVocabulary's message, which users and tests know, with the source named.
      outside([&] {
        const auto byte = static_cast<unsigned char>(text[i]);
        return "character " + (std::isprint(byte) ? "'" + std::string(1, text[i]) + "' " : std::string()) +
               "(byte " + std::to_string(byte) + ") at offset " + std::to_string(i);
      });
    }
  } else {
    for_each_symbol(mode, text, source, options.final_eos, [&](std::string_view s, std::size_t offset) {
      const auto it = index_.find(std::string(s));
      if (it != index_.end()) {
        ids.push_back(it->second);
        return;
      }
      outside([&] {
        return std::string(mode == TokenMode::chars ? "character" : "word") + " '" + std::string(s) +
               "' at byte offset " + std::to_string(offset);
      });
    });
  }
  if (options.skipped) *options.skipped = skipped;
  if (options.as_unknown) *options.as_unknown = as_unknown;
}

std::string Vocabulary::decode(std::span<const std::int32_t> ids) const {
  std::string out;
  bool line_start = true;
  for (std::int32_t id : ids) {
    if (id < 0 || id >= size())
      throw std::out_of_range("token " + std::to_string(id) + " is outside the vocabulary of " +
                              std::to_string(size()));
    const std::string& s = symbols[static_cast<std::size_t>(id)];
    if (mode != TokenMode::words) {
      out += s;
    } else if (s == end_of_line_token) {
      out += '\n';
      line_start = true;
    } else {
      if (!line_start) out += ' ';
      out += s;
      line_start = false;
    }
  }
  return out;
}

TokenDType token_dtype(const std::string& name) {
  if (name == "uint16") return TokenDType::uint16;
  if (name == "uint32") return TokenDType::uint32;
  throw std::invalid_argument("--token-dtype must be uint16 or uint32, got '" + name + "'");
}

const char* name_of(TokenDType dtype) {
  return dtype == TokenDType::uint16 ? "uint16" : "uint32";
}

std::size_t width_of(TokenDType dtype) {
  return dtype == TokenDType::uint16 ? 2 : 4;
}

TokenFile::TokenFile(const std::string& path, TokenDType dtype, std::int64_t vocab)
    : path_(path), width_(width_of(dtype)), vocab_(vocab) {
  const std::string name = "token file " + quoted(path) + ": ";
  if (vocab < 1 || vocab > std::numeric_limits<std::int32_t>::max())
    throw std::invalid_argument(name + "--vocab-size must be in [1, 2^31 - 1], got " + std::to_string(vocab));
  if (dtype == TokenDType::uint16 && vocab > 65536)
    throw std::invalid_argument(name + "--vocab-size " + std::to_string(vocab) +
                                " does not fit uint16 ids (at most 65536): use --token-dtype uint32");
  require_regular_file(path);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open data file " + quoted(path) + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const std::string why = std::strerror(errno);
    ::close(fd);
    throw std::runtime_error(name + "cannot read it: " + why);
  }
  bytes_ = static_cast<std::size_t>(st.st_size);
  if (bytes_ % width_ != 0) {
    ::close(fd);
    throw std::invalid_argument(name + std::to_string(bytes_) + " bytes is not a multiple of " +
                                std::to_string(width_) + " (the width of " + name_of(dtype) +
                                " ids): the wrong --token-dtype, or a truncated file");
  }
  count_ = static_cast<std::int64_t>(bytes_ / width_);
  if (bytes_ > 0) {
    void* p = ::mmap(nullptr, bytes_, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      const std::string why = std::strerror(errno);
      ::close(fd);
      throw std::runtime_error(name + "cannot map it: " + why);
    }
    data_ = static_cast<const unsigned char*>(p);
  }
  ::close(fd);  // the mapping keeps the file
  // Every id checked once, a chunk at a time; each checked chunk is dropped from this process's resident
  // set (the page cache keeps it), so the check of a file larger than memory stays flat too.
  constexpr std::int64_t chunk = std::int64_t{1} << 22;
  for (std::int64_t begin = 0; begin < count_; begin += chunk) {
    const std::int64_t end = std::min(count_, begin + chunk);
    for (std::int64_t i = begin; i < end; ++i)
      if (id(i) >= static_cast<std::uint64_t>(vocab)) {
        const std::string message = name + "token " + std::to_string(i) + " (byte offset " +
                                    std::to_string(static_cast<std::size_t>(i) * width_) + ") is " +
                                    std::to_string(id(i)) + ", not below the vocabulary size " +
                                    std::to_string(vocab);
        ::munmap(const_cast<unsigned char*>(data_), bytes_);
        data_ = nullptr;
        throw std::invalid_argument(message);
      }
    release(begin, end);
  }
}

void TokenFile::release(std::int64_t begin, std::int64_t end) const {
  static const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const std::size_t from = (static_cast<std::size_t>(begin) * width_ + page - 1) / page * page;
  const std::size_t to = static_cast<std::size_t>(end) * width_ / page * page;
  // Advice only: a failure leaves the pages resident, which is no error.
  if (data_ != nullptr && to > from)
    (void)::madvise(const_cast<unsigned char*>(data_) + from, to - from, MADV_DONTNEED);
}

TokenFile::~TokenFile() {
  if (data_ != nullptr) ::munmap(const_cast<unsigned char*>(data_), bytes_);
}

TokenFileStreams::TokenFileStreams(std::shared_ptr<const TokenFile> file, std::int64_t begin,
                                   std::int64_t end, std::int64_t batch)
    : file_(std::move(file)), begin_(begin), batch_(batch), release_every_(0) {
  if (!file_ || begin < 0 || end > file_->size() || begin > end)
    throw std::invalid_argument("token streams: range outside the file");
  steps_ = batch > 0 ? (end - begin - 1) / batch : 0;
  if (steps_ < 1)
    throw std::invalid_argument("token file " + quoted(file_->path()) + ": " + std::to_string(end - begin) +
                                " tokens are too few for " + std::to_string(batch) + " streams");
  inputs_.resize(static_cast<std::size_t>(batch));
  targets_.resize(static_cast<std::size_t>(batch));
  release_every_ = static_cast<std::int64_t>((std::size_t{64} << 10) / file_->width());
}

Step TokenFileStreams::step(std::int64_t t) const {
  for (std::int64_t b = 0; b < batch_; ++b) {
    const std::int64_t at = begin_ + b * steps_ + t;
    inputs_[static_cast<std::size_t>(b)] = (*file_)[at];
    targets_[static_cast<std::size_t>(b)] = (*file_)[at + 1];
  }
  if (t > 0 && t % release_every_ == 0)
    for (std::int64_t b = 0; b < batch_; ++b) {
      // Twice the stride back: the page across the previous boundary, partly used then, is passed now.
      const std::int64_t row = begin_ + b * steps_;
      file_->release(row + std::max<std::int64_t>(0, t - 2 * release_every_), row + t);
    }
  Step s;
  s.tokens = inputs_;
  s.target_tokens = targets_;
  return s;
}

void write_token_file(const std::string& path, std::span<const std::int32_t> ids, TokenDType dtype) {
  const std::size_t width = width_of(dtype);
  const std::int64_t limit = dtype == TokenDType::uint16 ? 65536 : std::int64_t{1} << 32;
  for (std::size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= limit)
      throw std::invalid_argument("token file " + quoted(path) + ": id " + std::to_string(ids[i]) +
                                  " does not fit " + name_of(dtype));
  models::write_file_atomically(
      path,
      [&](std::FILE* f) {
        std::vector<unsigned char> buffer;
        constexpr std::size_t chunk = 1 << 16;
        for (std::size_t begin = 0; begin < ids.size(); begin += chunk) {
          buffer.clear();
          for (std::size_t i = begin; i < std::min(ids.size(), begin + chunk); ++i)
            for (std::size_t k = 0; k < width; ++k)
              buffer.push_back(static_cast<unsigned char>(static_cast<std::uint32_t>(ids[i]) >> (8 * k)));
          if (std::fwrite(buffer.data(), 1, buffer.size(), f) != buffer.size())
            throw std::runtime_error("token file " + quoted(path) +
                                     ": write failed: " + std::strerror(errno));
        }
      },
      "token file");
}

}  // namespace rwd::trainers
