#include "rewind/runtime/stream.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "rewind/trainers/csv.hpp"

namespace rwd::runtime {

LineSource::~LineSource() = default;

namespace {

constexpr int wait_ms = 100;  // how often a blocked read looks at the stop flag

// Lines out of the bytes read from one descriptor: a read buffer and the line being assembled, both bounded.
class LineReader {
 public:
  explicit LineReader(std::size_t max_line) : max_line_(max_line), buffer_(1 << 16) {}

  // A whole line from what was read, if there is one; a line longer than max_line is consumed and refused.
  bool take(std::string_view& out) {
    if (clear_next_) line_.clear(), clear_next_ = false;  // the line handed out last is done with
    while (begin_ < end_) {
      const char* data = buffer_.data() + begin_;
      const auto* newline = static_cast<const char*>(std::memchr(data, '\n', end_ - begin_));
      const std::size_t n = newline ? static_cast<std::size_t>(newline - data) : end_ - begin_;
      if (!too_long_) {
        if (line_.size() + n > max_line_) {
          too_long_ = true;
        } else {
          line_.append(data, n);
        }
      }
      begin_ += n + (newline ? 1 : 0);
      if (!newline) return false;
      ++number_;
      if (too_long_) {
        too_long_ = false;
        line_.clear();
        throw std::length_error("line " + std::to_string(number_) + " is longer than " +
                                std::to_string(max_line_) + " bytes: refused");
      }
      if (!line_.empty() && line_.back() == '\r') line_.pop_back();
      out = line_;
      clear_next_ = true;
      return true;
    }
    return false;
  }
  // Reads what fd has; false at its end.
  bool fill(int fd) {
    if (clear_next_) line_.clear(), clear_next_ = false;
    const ssize_t got = ::read(fd, buffer_.data(), buffer_.size());
    if (got < 0) {
      if (errno == EINTR || errno == EAGAIN) return true;
      throw std::runtime_error(std::string("read failed: ") + std::strerror(errno));
    }
    begin_ = 0, end_ = static_cast<std::size_t>(got);
    return got > 0;
  }
  // At the end: the last line, when it has no line end.
  bool rest(std::string_view& out) {
    if (clear_next_) line_.clear(), clear_next_ = false;
    if (line_.empty()) return false;
    ++number_;
    out = line_;
    clear_next_ = true;
    return true;
  }
  void reset() { begin_ = end_ = 0, line_.clear(), too_long_ = clear_next_ = false, number_ = 0; }
  std::int64_t number() const { return number_; }

 private:
  std::size_t max_line_;
  std::vector<char> buffer_;
  std::size_t begin_ = 0, end_ = 0;
  std::string line_;
  bool too_long_ = false, clear_next_ = false;
  std::int64_t number_ = 0;
};

bool stopped(const SourceOptions& o) {
  return o.stop && o.stop->load();
}

// Waits until fd has something to read (or is at its end), looking at the stop flag every wait_ms.
bool wait_readable(int fd, const SourceOptions& o) {
  while (!stopped(o)) {
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, wait_ms);
    if (ready > 0) return true;
    if (ready < 0 && errno != EINTR)
      throw std::runtime_error(std::string("poll failed: ") + std::strerror(errno));
  }
  return false;
}

class FdLines final : public LineSource {
 public:
  FdLines(int fd, std::string name, bool regular, bool fifo, const SourceOptions& o)
      : fd_(fd), name_(std::move(name)), regular_(regular), fifo_(fifo), o_(o), reader_(o.max_line) {}
  ~FdLines() override {
    if (fd_ > 0) ::close(fd_);
  }
  std::optional<std::string_view> next() override {
    std::string_view line;
    while (!stopped(o_)) {
      if (reader_.take(line)) return line;
      // A regular file is always readable; poll says nothing about its growth.
      if (!regular_ && !wait_readable(fd_, o_)) return std::nullopt;
      if (reader_.fill(fd_)) {
        seen_data_ = true;
        continue;
      }
      // A FIFO reads as ended until its writer comes, and a file that may grow is never ended: wait.
      if ((regular_ && o_.follow) || (fifo_ && !seen_data_)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
        continue;
      }
      if (reader_.rest(line)) return line;
      return std::nullopt;
    }
    return std::nullopt;
  }
  std::string name() const override { return name_; }
  std::int64_t line() const override { return reader_.number(); }

 private:
  int fd_;
  std::string name_;
  bool regular_, fifo_, seen_data_ = false;
  SourceOptions o_;
  LineReader reader_;
};

class SocketLines final : public LineSource {
 public:
  SocketLines(int listener, std::string name, const SourceOptions& o)
      : listener_(listener), name_(std::move(name)), o_(o), reader_(o.max_line) {}
  ~SocketLines() override {
    if (client_ >= 0) ::close(client_);
    ::close(listener_);
  }
  std::optional<std::string_view> next() override {
    std::string_view line;
    while (!stopped(o_)) {
      if (client_ < 0) {
        if (!wait_readable(listener_, o_)) return std::nullopt;
        client_ = ::accept(listener_, nullptr, nullptr);
        if (client_ < 0) continue;
        reader_.reset();
        restarted_ = clients_++ > 0;
      }
      if (reader_.take(line)) return line;
      if (!wait_readable(client_, o_)) return std::nullopt;
      if (reader_.fill(client_)) continue;
      ::close(client_);  // this client is done: its last line, then the next client
      client_ = -1;
      if (reader_.rest(line)) return line;
    }
    return std::nullopt;
  }
  std::string name() const override {
    return name_ + (clients_ > 0 ? " (client " + std::to_string(clients_) + ")" : "");
  }
  std::int64_t line() const override { return reader_.number(); }
  bool restarted() override {
    const bool r = restarted_;
    restarted_ = false;
    return r;
  }

 private:
  int listener_, client_ = -1;
  std::string name_;
  SourceOptions o_;
  LineReader reader_;
  std::int64_t clients_ = 0;
  bool restarted_ = false;
};

}  // namespace

std::unique_ptr<LineSource> open_lines(const std::string& path, const SourceOptions& options) {
  if (path == "-") return std::make_unique<FdLines>(0, "standard input", false, false, options);
  // Non-blocking open, so that a FIFO without a writer yet does not block here (where no signal is looked
  // at).
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throw std::runtime_error("cannot open '" + path + "': " + std::strerror(errno));
  struct stat st {};
  ::fstat(fd, &st);
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    throw std::invalid_argument("'" + path + "' is a directory");
  }
  const bool regular = S_ISREG(st.st_mode);
  if (options.follow && !regular) {
    ::close(fd);
    throw std::invalid_argument("--follow applies to a regular file that grows; '" + path + "' is not one");
  }
  ::fcntl(fd, F_SETFL,
          ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);  // reads block from here on; poll does the waiting
  return std::make_unique<FdLines>(fd, "'" + path + "'", regular, S_ISFIFO(st.st_mode), options);
}

std::unique_ptr<LineSource> listen_lines(const std::string& address, int port, const SourceOptions& options) {
  if (port < 0 || port > 65535)
    throw std::invalid_argument("--listen: port " + std::to_string(port) + " is not in 0-65535");
  sockaddr_in at{};
  at.sin_family = AF_INET;
  at.sin_port = htons(static_cast<std::uint16_t>(port));
  if (::inet_pton(AF_INET, address.c_str(), &at.sin_addr) != 1)
    throw std::invalid_argument("--listen-address: '" + address + "' is not an IPv4 address");
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(std::string("cannot open a socket: ") + std::strerror(errno));
  const int yes = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&at), sizeof at) != 0 || ::listen(fd, 1) != 0) {
    const std::string why = std::strerror(errno);
    ::close(fd);
    throw std::runtime_error("--listen: cannot listen on " + address + ":" + std::to_string(port) + ": " +
                             why);
  }
  socklen_t size = sizeof at;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&at), &size);  // port 0: the one the system chose
  return std::make_unique<SocketLines>(fd, address + ":" + std::to_string(ntohs(at.sin_port)), options);
}

// ---- rows ----------------------------------------------------------------------------------------------

RowParser::RowParser(std::string_view header, const std::vector<std::string>& inputs,
                     const std::vector<std::string>& targets, const std::vector<std::string>& keys,
                     const std::string& reset_column, char delimiter)
    : delimiter_(delimiter) {
  try {
    trainers::csv_record(header, delimiter, columns_);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("the header: ") + e.what());
  }
  if (!columns_.empty() && columns_[0].rfind("\xEF\xBB\xBF", 0) == 0) columns_[0].erase(0, 3);
  const auto index = [&](const std::string& name) {
    for (std::size_t c = 0; c < columns_.size(); ++c)
      if (columns_[c] == name) return c;
    std::string all;
    for (const std::string& c : columns_) all += (all.empty() ? "" : ", ") + c;
    throw std::invalid_argument("the stream has no column '" + name + "' (its header: " + all + ")");
  };
  for (const std::string& n : inputs) inputs_.push_back(index(n));
  for (const std::string& n : targets) targets_.push_back(index(n));
  for (const std::string& n : keys) keys_.push_back(index(n));
  if (!reset_column.empty()) reset_ = index(reset_column), has_reset_ = true;
}

void RowParser::parse(std::string_view line, std::int64_t number, ParsedRow& row) {
  // Built only for an error: a row that parses allocates nothing once the buffers have their sizes.
  const auto where = [&] { return "line " + std::to_string(number); };
  try {
    trainers::csv_record(line, delimiter_, cells_);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(where() + ": " + e.what());
  }
  if (cells_.size() != columns_.size())
    throw std::invalid_argument(where() + ": " + std::to_string(cells_.size()) + " values for " +
                                std::to_string(columns_.size()) + " columns");
  const auto number_at = [&](std::size_t c) {
    const std::string& cell = cells_[c];
    double v = 0;
    if (cell.empty())
      throw std::invalid_argument(where() + ", column '" + columns_[c] + "': the value is missing");
    if (!trainers::csv_number(cell, v))
      throw std::invalid_argument(where() + ", column '" + columns_[c] + "': '" + cell +
                                  "' is not a finite number");
    return v;
  };
  row.inputs.resize(inputs_.size());
  row.targets.resize(targets_.size());
  for (std::size_t i = 0; i < inputs_.size(); ++i) row.inputs[i] = number_at(inputs_[i]);
  for (std::size_t j = 0; j < targets_.size(); ++j) row.targets[j] = number_at(targets_[j]);
  row.starts_sequence = has_reset_ && number_at(reset_) != 0;
  row.keys.resize(keys_.size());
  for (std::size_t k = 0; k < keys_.size(); ++k) row.keys[k] = cells_[keys_[k]];
}

}  // namespace rwd::runtime
