#include "rewind/models/atomic_file.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace rwd::models {
namespace fs = std::filesystem;

namespace {

constexpr const char* temp_marker = ".tmp.";

// Temporaries of saves into the same file by processes that no longer run (killed mid-save) are removed.
void remove_stale_temporaries(const fs::path& file) {
  const std::string prefix = file.filename().string() + temp_marker;
  std::error_code ec;
  for (const auto& entry :
       fs::directory_iterator(file.parent_path().empty() ? "." : file.parent_path(), ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string pid_text = name.substr(prefix.size());
    if (pid_text.empty() || pid_text.find_first_not_of("0123456789") != std::string::npos) continue;
    const long pid = std::strtol(pid_text.c_str(), nullptr, 10);
    if (pid != ::getpid() && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH)
      fs::remove(entry.path(), ec);
  }
}

// After a rename, the directory entry itself must reach the disk for the new file to survive a power cut.
void sync_directory(const fs::path& file, const std::string& what) {
  const fs::path dir = file.parent_path().empty() ? fs::path(".") : file.parent_path();
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0 || ::fsync(fd) != 0) {
    const std::string why = std::strerror(errno);
    if (fd >= 0) ::close(fd);
    throw std::runtime_error(what + " '" + file.string() + "': cannot sync directory '" + dir.string() +
                             "': " + why);
  }
  ::close(fd);
}

}  // namespace

void write_file_atomically(const fs::path& file, const std::function<void(std::FILE*)>& write,
                           const std::string& what) {
  const std::string name = what + " '" + file.string() + "': ";
  remove_stale_temporaries(file);
  fs::path temp = file;
  temp += temp_marker + std::to_string(::getpid());
  std::FILE* f = std::fopen(temp.c_str(), "wb");
  if (f == nullptr)
    throw std::runtime_error(name + "cannot create '" + temp.string() + "': " + std::strerror(errno));
  try {
    write(f);
    if (std::fflush(f) != 0 || ::fsync(::fileno(f)) != 0)
      throw std::runtime_error(name + "flush failed: " + std::strerror(errno));
  } catch (...) {
    std::fclose(f);
    std::remove(temp.c_str());
    throw;
  }
  if (std::fclose(f) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(temp.c_str());
    throw std::runtime_error(name + "close failed: " + why);
  }
  std::error_code ec;
  fs::rename(temp, file, ec);
  if (ec) {
    std::remove(temp.c_str());
    throw std::runtime_error(name + "cannot rename into place: " + ec.message());
  }
  sync_directory(file, what);
}

}  // namespace rwd::models
