// Training data as B parallel streams: row b of step t continues row b of step t - 1, and the model's state
// is carried per row. See docs/trainers.md.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "rewind/autodiff/tensor.hpp"
#include "rewind/trainers/export.hpp"

namespace rwd::trainers {

using autodiff::Tensor;

inline constexpr std::int32_t no_target = -1;  // a token target that carries no loss (PyTorch's ignore_index)

// What the rows see and must predict at one step. Spans point into the dataset and stay valid until the next
// step() on it (a dataset read in place, TokenFileStreams, gathers each step into one buffer of its own).
struct Step {
  std::span<const std::int32_t> tokens;         // token inputs [B], or empty for real-valued data
  const Tensor* features = nullptr;             // real-valued inputs [B, input_size]
  std::span<const std::int32_t> target_tokens;  // [B]; no_target where a row carries no loss
  const Tensor* target_values = nullptr;        // real-valued targets [B, output_size]
  bool has_loss = true;                         // real-valued data: whether this step carries a loss
  std::span<const std::uint8_t> loss_rows;  // real-valued data, [B] or empty (all): rows that carry a loss
  std::span<const std::uint8_t> reset;      // [B] or empty: 1 restarts that row's state before this step
};

class REWIND_TRAINERS_EXPORT Dataset {
 public:
  virtual ~Dataset();
  virtual std::int64_t batch() const = 0;
  virtual std::int64_t steps() const = 0;  // T, per row
  virtual Step step(std::int64_t t) const = 0;
  virtual std::int64_t vocab_size() const = 0;   // > 0 for token data
  virtual std::int64_t input_size() const = 0;   // real-valued data
  virtual std::int64_t output_size() const = 0;  // classes or target columns
};

// Token streams held in memory: inputs[t][b], targets[t][b], resets[t][b].
class REWIND_TRAINERS_EXPORT TokenData : public Dataset {
 public:
  TokenData(std::int64_t batch, std::int64_t steps, std::int64_t vocab);
  std::int64_t batch() const override { return batch_; }
  std::int64_t steps() const override { return steps_; }
  Step step(std::int64_t t) const override;
  std::int64_t vocab_size() const override { return vocab_; }
  std::int64_t input_size() const override { return 0; }
  std::int64_t output_size() const override { return vocab_; }

  std::int32_t& input(std::int64_t t, std::int64_t b) { return inputs_[index(t, b)]; }
  std::int32_t& target(std::int64_t t, std::int64_t b) { return targets_[index(t, b)]; }
  void set_reset(std::int64_t t, std::int64_t b) {
    resets_[index(t, b)] = 1;
    any_reset_[static_cast<std::size_t>(t)] = 1;
  }

 private:
  std::size_t index(std::int64_t t, std::int64_t b) const { return static_cast<std::size_t>(t * batch_ + b); }
  std::int64_t batch_, steps_, vocab_;
  std::vector<std::int32_t> inputs_, targets_;
  std::vector<std::uint8_t> resets_, any_reset_;
};

// Real-valued streams: features[t] [B, input], targets[t] [B, output], a loss flag per step, resets.
class REWIND_TRAINERS_EXPORT SeriesData : public Dataset {
 public:
  SeriesData(std::int64_t batch, std::int64_t steps, std::int64_t input_size, std::int64_t output_size);
  std::int64_t batch() const override { return batch_; }
  std::int64_t steps() const override { return steps_; }
  Step step(std::int64_t t) const override;
  std::int64_t vocab_size() const override { return 0; }
  std::int64_t input_size() const override { return input_; }
  std::int64_t output_size() const override { return output_; }

  Tensor& features(std::int64_t t) { return features_[static_cast<std::size_t>(t)]; }
  Tensor& targets(std::int64_t t) { return targets_[static_cast<std::size_t>(t)]; }
  void set_has_loss(std::int64_t t, bool v) { has_loss_[static_cast<std::size_t>(t)] = v; }
  // Row b carries no loss at step t (its target there is meaningless, e.g. across a sequence boundary).
  void set_no_loss(std::int64_t t, std::int64_t b);
  void set_reset(std::int64_t t, std::int64_t b) {
    resets_[static_cast<std::size_t>(t * batch_ + b)] = 1;
    any_reset_[static_cast<std::size_t>(t)] = 1;
  }

 private:
  std::int64_t batch_, steps_, input_, output_;
  std::vector<Tensor> features_, targets_;
  std::vector<std::uint8_t> has_loss_, resets_, any_reset_, loss_rows_, any_row_masked_;
};

// Streams [begin, end) of another dataset, as a dataset of their own: one process's share under data
// parallelism. Token spans point into the whole; real-valued rows are copied once, here.
class REWIND_TRAINERS_EXPORT StreamSlice : public Dataset {
 public:
  StreamSlice(const Dataset& whole, std::int64_t begin, std::int64_t end);
  std::int64_t batch() const override { return end_ - begin_; }
  std::int64_t steps() const override { return whole_.steps(); }
  Step step(std::int64_t t) const override;
  std::int64_t vocab_size() const override { return whole_.vocab_size(); }
  std::int64_t input_size() const override { return whole_.input_size(); }
  std::int64_t output_size() const override { return whole_.output_size(); }

 private:
  const Dataset& whole_;
  std::int64_t begin_, end_;
  std::vector<Tensor> features_, targets_;  // real-valued data: this slice's rows of every step
};

// Throws unless path names a regular file (symbolic links followed): "<what> 'PATH' is a FIFO (named pipe),
// not a regular file", or "cannot open <what> 'PATH': No such file or directory". Checked before a file is
// opened, since files are read more than once (for their hash, then their data): a FIFO read to its end would
// then wait forever, and a device says nothing useful.
REWIND_TRAINERS_EXPORT void require_regular_file(const std::string& path,
                                                 const std::string& what = "data file");

// Character-level text: the vocabulary is the sorted set of bytes in the text.
struct REWIND_TRAINERS_EXPORT CharVocabulary {
  std::string symbols;  // symbols[i] is token i
  static CharVocabulary of(const std::string& text);
  std::vector<std::int32_t> encode(const std::string& text) const;  // throws naming an unknown character
};

// The text cut into `batch` contiguous pieces; each step predicts the next character.
REWIND_TRAINERS_EXPORT std::unique_ptr<TokenData> text_streams(const std::vector<std::int32_t>& ids,
                                                               std::int64_t vocab, std::int64_t batch);

// Synthetic long-range tasks, generated from a seed. `sequences` back-to-back sequences per row, each
// starting with a reset. recall:L: L random symbols of `vocab`; only the last step has a target: the first
// symbol.
REWIND_TRAINERS_EXPORT std::unique_ptr<TokenData> recall_task(std::int64_t length, std::int64_t vocab,
                                                              std::int64_t batch, std::int64_t sequences,
                                                              std::uint64_t seed);
// delay:D: one stream per row of random symbols; the target at t is the input at t - D (none for t < D).
REWIND_TRAINERS_EXPORT std::unique_ptr<TokenData> delay_task(std::int64_t delay, std::int64_t vocab,
                                                             std::int64_t batch, std::int64_t steps,
                                                             std::uint64_t seed);
// adding:L (Hochreiter & Schmidhuber 1997): inputs (value in [0, 1), marker); two markers per sequence; the
// target at the last step is the sum of the two marked values.
REWIND_TRAINERS_EXPORT std::unique_ptr<SeriesData> adding_task(std::int64_t length, std::int64_t batch,
                                                               std::int64_t sequences, std::uint64_t seed);

// Parses "recall:20", "delay:5", "adding:50" into a dataset.
REWIND_TRAINERS_EXPORT std::unique_ptr<Dataset> synthetic_task(const std::string& spec, std::int64_t batch,
                                                               std::int64_t steps, std::uint64_t seed);

}  // namespace rwd::trainers
