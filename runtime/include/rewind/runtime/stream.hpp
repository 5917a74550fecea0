// Rows as they arrive: one line source for standard input, a named pipe, a file that grows and a TCP socket,
// and the parser that turns a CSV line into a model's inputs and targets. What rewind online reads through.
// docs/online.md.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rewind/runtime/export.hpp"

namespace rwd::runtime {

// Lines of at most max_line bytes (a longer one is an error naming its number, and the source goes on after
// it), read as they come: blocking reads that give up every 100 ms to look at `stop`, so that a signal ends
// the wait. Memory: one line and one read buffer, whatever the stream's length.
class REWIND_RUNTIME_EXPORT LineSource {
 public:
  virtual ~LineSource();
  // The next line without its line end; nullopt at the end of the stream (or once stop is set).
  virtual std::optional<std::string_view> next() = 0;
  // What the source is, for messages: "standard input", "'rows.fifo'", "127.0.0.1:7000 (client 2)".
  virtual std::string name() const = 0;
  // The number of the line next() returned last, from 1 (the header) for each client.
  virtual std::int64_t line() const = 0;
  // A new client replaced the last one: its first line is a header again.
  virtual bool restarted() { return false; }

  static constexpr std::size_t default_max_line = std::size_t{1} << 20;
};

struct SourceOptions {
  bool follow = false;  // a regular file: at its end, wait for more (tail -f) instead of ending
  std::size_t max_line = LineSource::default_max_line;
  const std::atomic<bool>* stop = nullptr;
};

// "-": standard input; a FIFO or a file (with follow, a file that grows). Errors name the path.
REWIND_RUNTIME_EXPORT std::unique_ptr<LineSource> open_lines(const std::string& path,
                                                             const SourceOptions& options);
// A TCP server on address:port (127.0.0.1 unless told otherwise) taking one client at a time; each client's
// lines in turn. Nothing is read faster than next() is called: a client that sends faster than rows are
// processed fills the kernel's buffers and is slowed by TCP, never this process's memory.
REWIND_RUNTIME_EXPORT std::unique_ptr<LineSource> listen_lines(const std::string& address, int port,
                                                               const SourceOptions& options);

// One line of a CSV stream as a model reads it, by the stream's header: inputs and targets in the model's
// order, whether it starts a sequence, the key columns' text.
struct ParsedRow {
  std::vector<double> inputs, targets;
  bool starts_sequence = false;
  std::vector<std::string> keys;
};

class REWIND_RUNTIME_EXPORT RowParser {
 public:
  // header: the stream's first line; the columns named must all be in it (errors list what it has).
  RowParser(std::string_view header, const std::vector<std::string>& inputs,
            const std::vector<std::string>& targets, const std::vector<std::string>& keys,
            const std::string& reset_column, char delimiter = ',');
  // Parses into `row` (its buffers reused); throws std::invalid_argument naming line `number` and the column
  // of a ragged line, an empty cell or a value that is not a finite number.
  void parse(std::string_view line, std::int64_t number, ParsedRow& row);
  const std::vector<std::string>& columns() const { return columns_; }

 private:
  std::vector<std::string> columns_;
  std::vector<std::size_t> inputs_, targets_, keys_;
  std::size_t reset_ = 0;
  bool has_reset_ = false;
  char delimiter_;
  std::vector<std::string> cells_;
};

}  // namespace rwd::runtime
