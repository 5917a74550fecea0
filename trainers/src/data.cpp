#include "rewind/trainers/data.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

namespace rwd::trainers {

using autodiff::DType;
using autodiff::Shape;

Dataset::~Dataset() = default;

namespace {
// Returns batch once batch and steps are known to be positive: called first in the constructors' member
// initialisers, before any buffer is sized from them.
std::int64_t checked_batch(const char* what, std::int64_t batch, std::int64_t steps) {
  if (batch < 1 || steps < 1)
    throw std::invalid_argument(std::string(what) + ": batch (" + std::to_string(batch) + ") and steps (" +
                                std::to_string(steps) + ") must be positive");
  return batch;
}
}  // namespace

TokenData::TokenData(std::int64_t batch, std::int64_t steps, std::int64_t vocab)
    : batch_(checked_batch("token data", batch, steps)),
      steps_(steps),
      vocab_(vocab),
      inputs_(static_cast<std::size_t>(batch * steps), 0),
      targets_(static_cast<std::size_t>(batch * steps), no_target),
      resets_(static_cast<std::size_t>(batch * steps), 0),
      any_reset_(static_cast<std::size_t>(steps), 0) {
  if (vocab < 1) throw std::invalid_argument("token data: vocabulary must not be empty");
}

Step TokenData::step(std::int64_t t) const {
  const auto b = static_cast<std::size_t>(batch_);
  const std::size_t at = static_cast<std::size_t>(t) * b;
  Step s;
  s.tokens = {inputs_.data() + at, b};
  s.target_tokens = {targets_.data() + at, b};
  if (any_reset_[static_cast<std::size_t>(t)]) s.reset = {resets_.data() + at, b};
  return s;
}

SeriesData::SeriesData(std::int64_t batch, std::int64_t steps, std::int64_t input_size,
                       std::int64_t output_size)
    : batch_(checked_batch("series data", batch, steps)),
      steps_(steps),
      input_(input_size),
      output_(output_size),
      has_loss_(static_cast<std::size_t>(steps), 1),
      resets_(static_cast<std::size_t>(batch * steps), 0),
      any_reset_(static_cast<std::size_t>(steps), 0),
      loss_rows_(static_cast<std::size_t>(batch * steps), 1),
      any_row_masked_(static_cast<std::size_t>(steps), 0) {
  for (std::int64_t t = 0; t < steps; ++t) {
    features_.emplace_back(Shape::matrix(batch, input_size), DType::f32);
    targets_.emplace_back(Shape::matrix(batch, output_size), DType::f32);
  }
}

Step SeriesData::step(std::int64_t t) const {
  const auto i = static_cast<std::size_t>(t);
  Step s;
  s.features = &features_[i];
  s.target_values = &targets_[i];
  s.has_loss = has_loss_[i] != 0;
  const std::size_t b = static_cast<std::size_t>(batch_);
  if (any_reset_[i]) s.reset = {resets_.data() + i * b, b};
  if (any_row_masked_[i]) s.loss_rows = {loss_rows_.data() + i * b, b};
  return s;
}

void SeriesData::set_no_loss(std::int64_t t, std::int64_t b) {
  loss_rows_[static_cast<std::size_t>(t * batch_ + b)] = 0;
  any_row_masked_[static_cast<std::size_t>(t)] = 1;
  for (std::int64_t j = 0; j < output_; ++j) targets(t).set(b * output_ + j, 0.0);
}

void require_regular_file(const std::string& path, const std::string& what) {
  if (path == "-")
    throw std::invalid_argument(what +
                                " '-' (standard input) is a stream, not a regular file; use rewind online");
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    throw std::runtime_error("cannot open " + what + " '" + path + "': " + std::strerror(errno));
  if (S_ISREG(st.st_mode)) return;
  const char* kind = S_ISDIR(st.st_mode)    ? "a directory"
                     : S_ISFIFO(st.st_mode) ? "a FIFO (named pipe)"
                     : S_ISCHR(st.st_mode)  ? "a character device"
                     : S_ISBLK(st.st_mode)  ? "a block device"
                     : S_ISSOCK(st.st_mode) ? "a socket"
                                            : "not a file";
  throw std::invalid_argument(what + " '" + path + "' is " + kind + ", not a regular file" +
                              (S_ISDIR(st.st_mode) ? "" : "; use rewind online to learn from a stream"));
}

CharVocabulary CharVocabulary::of(const std::string& text) {
  CharVocabulary v;
  v.symbols = text;
  std::sort(v.symbols.begin(), v.symbols.end());
  v.symbols.erase(std::unique(v.symbols.begin(), v.symbols.end()), v.symbols.end());
  return v;
}

std::vector<std::int32_t> CharVocabulary::encode(const std::string& text) const {
  std::int32_t index[256];
  std::fill(std::begin(index), std::end(index), -1);
  for (std::size_t i = 0; i < symbols.size(); ++i)
    index[static_cast<unsigned char>(symbols[i])] = static_cast<std::int32_t>(i);
  std::vector<std::int32_t> ids;
  ids.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const std::int32_t id = index[static_cast<unsigned char>(text[i])];
    if (id < 0)
      throw std::invalid_argument("character " +
                                  (std::isprint(static_cast<unsigned char>(text[i]))
                                       ? "'" + std::string(1, text[i]) + "' "
                                       : std::string()) +
                                  "(byte " + std::to_string(static_cast<unsigned char>(text[i])) +
                                  ") at offset " + std::to_string(i) + " is not in the model's vocabulary");
    ids.push_back(id);
  }
  return ids;
}

StreamSlice::StreamSlice(const Dataset& whole, std::int64_t begin, std::int64_t end)
    : whole_(whole), begin_(begin), end_(end) {
  if (!(begin >= 0 && begin < end && end <= whole.batch()))
    throw std::invalid_argument("streams [" + std::to_string(begin) + ", " + std::to_string(end) +
                                ") are not a share of " + std::to_string(whole.batch()) + " streams");
  if (whole.vocab_size() > 0) return;
  auto rows = [&](const Tensor* t) {
    if (!t) return Tensor();
    const std::int64_t cols = t->shape().cols, element = t->bytes() / std::max<std::int64_t>(t->numel(), 1);
    Tensor out(autodiff::Shape::matrix(end - begin, cols), t->dtype());
    std::memcpy(out.raw(), static_cast<const char*>(t->raw()) + begin * cols * element,
                static_cast<std::size_t>((end - begin) * cols * element));
    return out;
  };
  for (std::int64_t t = 0; t < whole.steps(); ++t) {
    const Step s = whole.step(t);
    features_.push_back(rows(s.features));
    targets_.push_back(rows(s.target_values));
  }
}

Step StreamSlice::step(std::int64_t t) const {
  Step s = whole_.step(t);
  const auto offset = static_cast<std::size_t>(begin_), count = static_cast<std::size_t>(end_ - begin_);
  auto share = [&](auto span) { return span.empty() ? span : span.subspan(offset, count); };
  s.tokens = share(s.tokens);
  s.target_tokens = share(s.target_tokens);
  s.loss_rows = share(s.loss_rows);
  s.reset = share(s.reset);
  if (s.features) s.features = &features_[static_cast<std::size_t>(t)];
  if (s.target_values) s.target_values = &targets_[static_cast<std::size_t>(t)];
  return s;
}

std::unique_ptr<TokenData> text_streams(const std::vector<std::int32_t>& ids, std::int64_t vocab,
                                        std::int64_t batch) {
  const std::int64_t steps = batch > 0 ? (static_cast<std::int64_t>(ids.size()) - 1) / batch : 0;
  if (steps < 1)
    throw std::invalid_argument("text of " + std::to_string(ids.size()) + " characters is too short for " +
                                std::to_string(batch) + " streams");
  auto data = std::make_unique<TokenData>(batch, steps, vocab);
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t t = 0; t < steps; ++t) {
      const auto at = static_cast<std::size_t>(b * steps + t);
      data->input(t, b) = ids[at];
      data->target(t, b) = ids[at + 1];
    }
  return data;
}

std::unique_ptr<TokenData> recall_task(std::int64_t length, std::int64_t vocab, std::int64_t batch,
                                       std::int64_t sequences, std::uint64_t seed) {
  if (length < 2 || vocab < 2)
    throw std::invalid_argument("recall task: length and vocabulary must be at least 2");
  auto data = std::make_unique<TokenData>(batch, length * sequences, vocab);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<std::int32_t> symbol(0, static_cast<std::int32_t>(vocab - 1));
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t s = 0; s < sequences; ++s) {
      const std::int64_t start = s * length;
      data->set_reset(start, b);
      for (std::int64_t i = 0; i < length; ++i) data->input(start + i, b) = symbol(rng);
      data->target(start + length - 1, b) = data->input(start, b);
    }
  return data;
}

std::unique_ptr<TokenData> delay_task(std::int64_t delay, std::int64_t vocab, std::int64_t batch,
                                      std::int64_t steps, std::uint64_t seed) {
  if (delay < 0 || vocab < 2)
    throw std::invalid_argument("delay task: delay must be >= 0 and vocabulary >= 2");
  auto data = std::make_unique<TokenData>(batch, steps, vocab);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<std::int32_t> symbol(0, static_cast<std::int32_t>(vocab - 1));
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t t = 0; t < steps; ++t) {
      data->input(t, b) = symbol(rng);
      if (t >= delay) data->target(t, b) = data->input(t - delay, b);
    }
  return data;
}

std::unique_ptr<SeriesData> adding_task(std::int64_t length, std::int64_t batch, std::int64_t sequences,
                                        std::uint64_t seed) {
  if (length < 2) throw std::invalid_argument("adding task: length must be at least 2");
  auto data = std::make_unique<SeriesData>(batch, length * sequences, 2, 1);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> value(0, 1);
  for (std::int64_t t = 0; t < data->steps(); ++t) data->set_has_loss(t, (t + 1) % length == 0);
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t s = 0; s < sequences; ++s) {
      const std::int64_t start = s * length;
      data->set_reset(start, b);
      // One marker in each half of the sequence, as in the original task.
      std::uniform_int_distribution<std::int64_t> first(0, length / 2 - 1), second(length / 2, length - 1);
      const std::int64_t m1 = first(rng), m2 = second(rng);
      double sum = 0;
      for (std::int64_t i = 0; i < length; ++i) {
        const double v = value(rng);
        const bool marked = i == m1 || i == m2;
        data->features(start + i).set(b * 2, v);
        data->features(start + i).set(b * 2 + 1, marked ? 1.0 : 0.0);
        if (marked) sum += v;
      }
      data->targets(start + length - 1).set(b, sum);
    }
  return data;
}

std::unique_ptr<Dataset> synthetic_task(const std::string& spec, std::int64_t batch, std::int64_t steps,
                                        std::uint64_t seed) {
  const auto colon = spec.find(':');
  const std::string kind = spec.substr(0, colon);
  std::int64_t n = 0;
  std::size_t used = 0;
  std::string number = colon == std::string::npos ? "" : spec.substr(colon + 1);
  // recall:L:V draws from V symbols instead of 4.
  std::int64_t symbols = 4;
  if (const auto second = number.find(':'); kind == "recall" && second != std::string::npos) {
    const std::string v = number.substr(second + 1);
    std::size_t v_used = 0;
    try {
      symbols = std::stoll(v, &v_used);
    } catch (const std::exception&) {
      v_used = 0;
    }
    if (v_used == 0 || v_used != v.size() || symbols < 2)
      throw std::invalid_argument("task '" + spec +
                                  "': expected recall:L:V with V >= 2 symbols, e.g. recall:30:8");
    number = number.substr(0, second);
  }
  try {
    n = std::stoll(number, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != number.size() || n < 1)
    throw std::invalid_argument("task '" + spec +
                                "': expected NAME:NUMBER with a positive number, e.g. recall:20");
  if (kind == "recall")
    return recall_task(n, symbols, batch, std::max<std::int64_t>(1, steps / std::max<std::int64_t>(n, 1)),
                       seed);
  if (kind == "adding")
    return adding_task(n, batch, std::max<std::int64_t>(1, steps / std::max<std::int64_t>(n, 1)), seed);
  if (kind == "delay") return delay_task(n, 4, batch, steps, seed);
  throw std::invalid_argument("task '" + spec + "': unknown (recall:L[:V], adding:L or delay:D)");
}

}  // namespace rwd::trainers
