#include "stats/stats_token.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <openssl/rand.h>

namespace hubflow {

namespace {

std::string errno_text() {
  return std::strerror(errno);
}

std::string parent_of(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos)
    return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

/// Creates `dir` (0700) when missing and checks who may touch it: a
/// directory others can write lets them swap the token file for their own.
bool check_token_dir(const std::string& dir, bool strict, std::string& error) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    error = "cannot create the stats token directory " + dir + ": "
            + errno_text();
    return false;
  }
  struct stat st{};
  // The default directory must be a real directory, not a link someone
  // else planted; a configured one is the operator's choice.
  auto rc = strict ? ::lstat(dir.c_str(), &st) : ::stat(dir.c_str(), &st);
  if (rc != 0) {
    error = "cannot inspect the stats token directory " + dir + ": "
            + errno_text();
    return false;
  }
  if (!S_ISDIR(st.st_mode)) {
    error = "the stats token directory " + dir + " is not a directory";
    return false;
  }
  auto me = ::geteuid();
  if (st.st_uid != me && (strict || st.st_uid != 0)) {
    error = "the stats token directory " + dir + " belongs to uid "
            + std::to_string(st.st_uid) + ", not to this user (uid "
            + std::to_string(me) + "); remove it or set stats.token_file";
    return false;
  }
  auto forbidden = strict ? mode_t{077} : mode_t{022};
  if ((st.st_mode & forbidden) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o",
                  static_cast<unsigned>(st.st_mode & 07777));
    error = "the stats token directory " + dir + " has mode " + mode
            + (strict ? ": group and others must have no access (chmod 700 "
                      : ": group and others must not write it (chmod go-w ")
            + dir + ")";
    return false;
  }
  return true;
}

} // namespace

std::string default_stats_token_path(std::uint16_t port) {
  auto file = "/stats-" + std::to_string(port) + ".token";
  if (auto* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg && *xdg)
    return std::string{xdg} + "/hubflow" + file;
  auto uid = ::geteuid();
  if (uid == 0)
    return "/run/hubflow" + file;
  return "/tmp/hubflow-" + std::to_string(uid) + file;
}

std::string make_stats_token(std::string& error) {
  unsigned char bytes[stats_token_length / 2];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    error = "cannot draw random bytes for the stats token";
    return {};
  }
  static constexpr char hex[] = "0123456789abcdef";
  std::string token;
  for (auto b : bytes) {
    token += hex[b >> 4];
    token += hex[b & 0xf];
  }
  return token;
}

bool write_stats_token(const std::string& path, const std::string& token,
                       bool strict_dir, std::string& error) {
  if (!check_token_dir(parent_of(path), strict_dir, error))
    return false;
  auto tmp = path + ".tmp." + std::to_string(::getpid());
  int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
  int fd = ::open(tmp.c_str(), flags, 0600);
  if (fd < 0 && errno == EEXIST) {
    // Left by an earlier process that had our pid; the directory is ours.
    ::unlink(tmp.c_str());
    fd = ::open(tmp.c_str(), flags, 0600);
  }
  if (fd < 0) {
    error = "cannot create the stats token file " + tmp + ": " + errno_text();
    return false;
  }
  auto text = token + "\n";
  bool ok = ::fchmod(fd, 0600) == 0
            && ::write(fd, text.data(), text.size())
                 == static_cast<ssize_t>(text.size());
  auto write_error = errno_text();
  ::close(fd);
  if (!ok) {
    ::unlink(tmp.c_str());
    error = "cannot write the stats token file " + tmp + ": " + write_error;
    return false;
  }
  // Readers see the old file or the whole new one, never a partial token.
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    error = "cannot create the stats token file " + path + ": " + errno_text();
    ::unlink(tmp.c_str());
    return false;
  }
  return true;
}

bool read_stats_token(const std::string& path, std::string& token,
                      std::string& error) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    error = "cannot read the stats token " + path + ": " + errno_text();
    return false;
  }
  char buf[256];
  auto n = ::read(fd, buf, sizeof(buf));
  auto read_error = errno_text();
  ::close(fd);
  if (n < 0) {
    error = "cannot read the stats token " + path + ": " + read_error;
    return false;
  }
  std::string text(buf, static_cast<std::size_t>(n));
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r'
                           || text.back() == ' '))
    text.pop_back();
  bool hex = text.size() == stats_token_length
             && text.find_first_not_of("0123456789abcdef") == std::string::npos;
  if (!hex) {
    error = "the stats token file " + path + " does not hold a token";
    return false;
  }
  token = std::move(text);
  return true;
}

} // namespace hubflow
