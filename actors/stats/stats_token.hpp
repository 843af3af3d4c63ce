// The stats port's secret: a random token the broker writes at startup to a
// file only its own user can read; hubflowctl reads it from the same path
// and sends it as the first line (see stats_port.hpp). Whoever can read the
// file can read the counters, nothing more.
#pragma once

#include <cstdint>
#include <string>

namespace hubflow {

/// Hex characters of a token: 32 random bytes.
inline constexpr std::size_t stats_token_length = 64;

/// Where the token of the stats port `port` lives when stats.token_file is
/// not set: $XDG_RUNTIME_DIR/hubflow/stats-<port>.token when XDG_RUNTIME_DIR
/// is set, else /run/hubflow/stats-<port>.token for root, else
/// /tmp/hubflow-<uid>/stats-<port>.token. Both sides compute it the same way,
/// so they must run as the same user with the same environment.
std::string default_stats_token_path(std::uint16_t port);

/// 32 bytes from OpenSSL's RAND_bytes as 64 lowercase hex characters; empty
/// (with `error` set) when the generator fails.
std::string make_stats_token(std::string& error);

/// Writes `token` to `path` readable by this user only (mode 0600), through
/// a temporary file in the same directory renamed over `path`, opened with
/// O_EXCL and O_NOFOLLOW so no symlink planted there is followed. The
/// directory is created 0700 when missing. It is refused when it belongs to
/// another user (root's is accepted for a configured path) or when group or
/// others may write it; the default directory must give group and others no
/// access at all (`strict_dir`). Returns false and sets `error` otherwise.
bool write_stats_token(const std::string& path, const std::string& token,
                       bool strict_dir, std::string& error);

/// Reads a token file written by write_stats_token. False (with `error`
/// naming the file and the reason) when it is missing, unreadable or does
/// not hold a token.
bool read_stats_token(const std::string& path, std::string& token,
                      std::string& error);

} // namespace hubflow
