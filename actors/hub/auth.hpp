// Who may connect to the embedded hub and what each principal may publish
// and subscribe to (Baetyl's `principals` with `pub`/`sub` permit lists).
// Passwords are plain (as in Baetyl's examples) or hashes in the format
// mosquitto_passwd writes, so existing password files carry over.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/config.hpp"

namespace hubflow {

/// Built once per hub from its config; immutable and safe to share between
/// sessions and threads.
class authenticator {
public:
  /// Logs a warning for every principal whose password is stored in plain
  /// text and for every stored hash it cannot parse.
  explicit authenticator(const hub_config& cfg);

  /// The principal whose username and password match, or nullptr.
  /// A client without a password never matches a principal. The password
  /// comparison is constant-time.
  const principal_config* authenticate(std::string_view user,
                                       std::string_view password,
                                       bool has_password,
                                       bool from_loopback) const;

  /// The principal named `user`, without a password check: for a client
  /// whose verified TLS certificate names it (use_identity_as_username),
  /// and the owner a stored session names. nullptr when there is none.
  const principal_config* principal_named(std::string_view user) const;

  /// Whether a client without valid credentials may connect
  /// (cfg.allow_anonymous, cfg.anonymous_loopback_only).
  bool anonymous_allowed(bool from_loopback) const;

  /// p == nullptr means anonymous: allowed everything when anonymous is
  /// allowed at all. Otherwise: some `pub` filter matches `topic`.
  bool may_publish(const principal_config* p, std::string_view topic) const;

  /// p == nullptr as for may_publish. Otherwise: every topic that `filter`
  /// can match is matched by some `sub` filter (`a/#` permits `a/+/c` and
  /// `a/b`, not `#`). A shared subscription `$share/<group>/<filter>` is
  /// judged by its `<filter>`.
  bool may_subscribe(const principal_config* p, std::string_view filter) const;

  /// Whether a message on `topic` may be delivered to a session of `p`
  /// (nullptr as for may_publish): some `sub` filter matches `topic`.
  /// Checked on every delivery, so a subscription never reads more than
  /// its owner may.
  bool may_receive(const principal_config* p, std::string_view topic) const;

private:
  bool allow_anonymous_;
  bool anonymous_loopback_only_;
  std::vector<principal_config> principals_; // authenticate() points here
};

/// A password hash in the format mosquitto_passwd (2.0) writes:
/// $7$<iterations>$<base64 salt>$<base64 PBKDF2-HMAC-SHA512>.
std::string make_password_hash(std::string_view password);

/// True when `stored` (a plain password or a $6$/$7$ mosquitto_passwd hash)
/// matches `password`; constant-time compare. A value that starts like a
/// hash but does not parse as one matches nothing.
bool password_matches(std::string_view stored, std::string_view password);

/// Whether `stored` has the shape of a mosquitto_passwd hash ($6$ or $7$).
bool is_password_hash(std::string_view stored);

/// Whether every topic that `filter` can match is also matched by `permit`
/// (both MQTT topic filters; `$`-topics are matched only by filters that
/// name their first level literally).
bool filter_covers(std::string_view permit, std::string_view filter);

} // namespace hubflow
