// Who may connect to the embedded hub and what each client may publish
// and subscribe to: Baetyl's `principals` with `pub`/`sub` permit lists,
// Mosquitto's password_file and acl_file (hub/mosquitto_files.hpp) applied
// as Mosquitto 2.0 applies them, and the anonymous clients' permissions.
// Passwords are plain (as in Baetyl's examples) or hashes in the format
// mosquitto_passwd writes, so existing password files carry over.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.hpp"
#include "hub/mosquitto_files.hpp"

namespace hubflow {

/// The client a permission is asked for: the principal it logged in as
/// (nullptr: anonymous) and its client id (an acl pattern's `%c`).
struct client_identity {
  client_identity(const principal_config* p = nullptr,
                  std::string_view id = {})
    : principal(p), client_id(id) {
  }
  const principal_config* principal;
  std::string_view client_id;
};

/// Built once per hub from its config; immutable and safe to share between
/// sessions and threads.
class authenticator {
public:
  /// Logs a warning for every principal whose password is stored in plain
  /// text, for every stored hash it cannot parse and for every name that
  /// is both a config principal and in the password or acl file (the
  /// config's principal applies). Reads the Mosquitto files itself when
  /// cfg.files is null (throws config_error for a bad one).
  explicit authenticator(const hub_config& cfg);
  // The policies point into the authenticator's own members.
  authenticator(const authenticator&) = delete;
  authenticator& operator=(const authenticator&) = delete;

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

  /// Whether `who` may publish on `topic`. A config principal: some `pub`
  /// filter matches the topic. A password-file user or an anonymous
  /// client under an acl file: Mosquitto's write check. Anonymous without
  /// hub.anonymous_permissions and without an acl file, and a
  /// password-file user without an acl file: anything.
  bool may_publish(client_identity who, std::string_view topic) const;

  /// Whether `who` may subscribe to `filter`. With permit lists: every
  /// topic that `filter` can match is matched by some `sub` filter (`a/#`
  /// permits `a/+/c` and `a/b`, not `#`). Under an acl file: unless no
  /// topic the filter can match could be read (Mosquitto 2.0 grants every
  /// subscription and filters deliveries; hubflow filters deliveries the
  /// same way but refuses a subscription that could never deliver, such
  /// as one a `deny` line covers). A shared subscription
  /// `$share/<group>/<filter>` is judged by its `<filter>`.
  bool may_subscribe(client_identity who, std::string_view filter) const;

  /// Whether a message on `topic` may be delivered to a session of `who`:
  /// some `sub` filter matches `topic`, or Mosquitto's read check under an
  /// acl file. Checked on every delivery, so a subscription never reads
  /// more than its owner may.
  bool may_receive(client_identity who, std::string_view topic) const;

private:
  /// Where one client's permissions come from.
  struct policy {
    enum kind_t { everything, lists, acl } kind = everything;
    const std::vector<std::string>* pub = nullptr; // lists
    const std::vector<std::string>* sub = nullptr; // lists
    const std::vector<acl_rule>* section = nullptr; // acl: its own lines
  };
  const policy& policy_of(const principal_config* p) const;
  void add_file_users();
  void warn_about(const principal_config& p) const;
  /// Mosquitto's walk: the client's own section, then the patterns.
  /// `matches(rule_topic, is_deny)` says whether a rule applies.
  template <class Matches>
  bool acl_allows(client_identity who, const policy& pol, std::uint8_t access,
                  Matches matches) const;

  bool allow_anonymous_;
  bool anonymous_loopback_only_;
  std::shared_ptr<const mosquitto_files> files_;
  std::optional<permit_lists> anonymous_lists_;
  // The config's principals, then the password file's users; authenticate()
  // points here and policies_[i] is principals_[i]'s.
  std::vector<principal_config> principals_;
  std::vector<policy> policies_;
  policy anonymous_policy_;
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

/// Whether `stored` is a $6$ or $7$ hash that parses (base64 salt, 64-byte
/// digest, iterations above 0), i.e. one that some password can match.
bool valid_password_hash(std::string_view stored);

/// Whether every topic that `filter` can match is also matched by `permit`
/// (both MQTT topic filters; `$`-topics are matched only by filters that
/// name their first level literally).
bool filter_covers(std::string_view permit, std::string_view filter);

/// Whether some topic is matched by both filters (the same `$` rule).
bool filters_intersect(std::string_view a, std::string_view b);

} // namespace hubflow
