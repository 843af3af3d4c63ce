#include "hub/auth.hpp"

#include "core/base64.hpp"
#include "core/topic.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <vector>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>

namespace hubflow {

namespace {

// What mosquitto_passwd 2.0 writes: 12 random salt bytes, 101 PBKDF2
// iterations, a 64-byte SHA-512 result. Reading takes any iteration count.
constexpr std::size_t salt_bytes = 12;
constexpr int default_iterations = 101;
constexpr std::size_t sha512_bytes = 64;

std::string_view as_text(const unsigned char* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// ---- the two mosquitto_passwd formats

struct parsed_hash {
  enum kind { sha512, pbkdf2_sha512 } type;
  int iterations = 0;
  std::vector<unsigned char> salt;
  std::vector<unsigned char> digest;
};

std::vector<std::string_view> split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  for (;;) {
    auto end = text.find(separator, start);
    parts.push_back(text.substr(start, end - start));
    if (end == std::string_view::npos)
      return parts;
    start = end + 1;
  }
}

// $6$<salt>$<sha512(password + salt)> or $7$<iterations>$<salt>$<pbkdf2>.
std::optional<parsed_hash> parse_hash(std::string_view stored) {
  auto parts = split(stored, '$'); // leading '$' gives an empty first part
  parsed_hash result;
  std::string_view salt_text;
  std::string_view digest_text;
  if (parts.size() == 4 && parts[0].empty() && parts[1] == "6") {
    result.type = parsed_hash::sha512;
    salt_text = parts[2];
    digest_text = parts[3];
  } else if (parts.size() == 5 && parts[0].empty() && parts[1] == "7") {
    result.type = parsed_hash::pbkdf2_sha512;
    auto [end, error] = std::from_chars(
      parts[2].data(), parts[2].data() + parts[2].size(), result.iterations);
    if (error != std::errc{} || end != parts[2].data() + parts[2].size()
        || result.iterations <= 0)
      return std::nullopt;
    salt_text = parts[3];
    digest_text = parts[4];
  } else {
    return std::nullopt;
  }
  auto salt = base64_decode(salt_text);
  auto digest = base64_decode(digest_text);
  if (!salt || salt->empty() || !digest || digest->size() != sha512_bytes)
    return std::nullopt;
  result.salt.assign(salt->begin(), salt->end());
  result.digest.assign(digest->begin(), digest->end());
  return result;
}

std::array<unsigned char, sha512_bytes>
pbkdf2_sha512(std::string_view password, const std::vector<unsigned char>& salt,
              int iterations) {
  std::array<unsigned char, sha512_bytes> out{};
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                        salt.data(), static_cast<int>(salt.size()), iterations,
                        EVP_sha512(), static_cast<int>(out.size()), out.data())
      != 1)
    throw std::runtime_error("PKCS5_PBKDF2_HMAC failed");
  return out;
}

std::array<unsigned char, sha512_bytes>
salted_sha512(std::string_view password,
              const std::vector<unsigned char>& salt) {
  std::array<unsigned char, sha512_bytes> out{};
  unsigned int size = 0;
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx{EVP_MD_CTX_new(),
                                                              EVP_MD_CTX_free};
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha512(), nullptr) != 1
      || EVP_DigestUpdate(ctx.get(), password.data(), password.size()) != 1
      || EVP_DigestUpdate(ctx.get(), salt.data(), salt.size()) != 1
      || EVP_DigestFinal_ex(ctx.get(), out.data(), &size) != 1)
    throw std::runtime_error("SHA-512 digest failed");
  return out;
}

bool equal_constant_time(const void* a, std::size_t a_size, const void* b,
                         std::size_t b_size) {
  // Sizes are not secret (hash sizes are fixed; a plain password's length
  // leaks at most its length), the bytes are.
  return a_size == b_size && CRYPTO_memcmp(a, b, a_size) == 0;
}

// ---- topic filters

bool is_dollar_topic(std::string_view name) {
  return !name.empty() && name.front() == '$';
}

} // namespace

bool filter_covers(std::string_view permit, std::string_view filter) {
  auto p = split(permit, '/');
  auto f = split(filter, '/');
  // A wildcard in the permit's first level covers no `$` topic, so a filter
  // naming a `$` first level needs a permit that names it too.
  if (is_dollar_topic(f[0]) && (p[0] == "#" || p[0] == "+"))
    return false;
  for (std::size_t i = 0;; ++i) {
    if (i < p.size() && p[i] == "#")
      return true; // covers this level and everything below (and the parent)
    if (i >= f.size())
      return i >= p.size(); // the filter ended: so must the permit
    if (i >= p.size())
      return false; // the filter reaches deeper than the permit
    if (f[i] == "#")
      return false; // any depth below, and the permit is not `#` here
    if (p[i] == "+")
      continue; // covers any single level, literal or `+`
    if (f[i] == "+" || f[i] != p[i])
      return false;
  }
}

bool filters_intersect(std::string_view a, std::string_view b) {
  auto x = split(a, '/');
  auto y = split(b, '/');
  auto wildcard = [](std::string_view level) {
    return level == "#" || level == "+";
  };
  // A first-level wildcard reaches no `$` topic.
  if ((is_dollar_topic(x[0]) && wildcard(y[0]))
      || (is_dollar_topic(y[0]) && wildcard(x[0])))
    return false;
  for (std::size_t i = 0;; ++i) {
    if ((i < x.size() && x[i] == "#") || (i < y.size() && y[i] == "#"))
      return true; // this level and all below, the parent too
    if (i >= x.size() || i >= y.size())
      return i >= x.size() && i >= y.size();
    if (x[i] != "+" && y[i] != "+" && x[i] != y[i])
      return false;
  }
}

namespace {

// ---- Mosquitto's acl checks (src/security.c, src/security_default.c of 2.0)

enum class verdict { undecided, allow, deny };

// One list of rules as Mosquitto walks it: it keeps `deny` lines in front,
// so any deny that applies wins; then any line granting `access` allows.
template <class Matches>
verdict judge(const std::vector<acl_rule>& rules, std::uint8_t access,
              Matches matches) {
  for (const auto& r : rules)
    if (r.access == acl_deny && matches(r.topic, true))
      return verdict::deny;
  for (const auto& r : rules)
    if ((r.access & access) != 0 && matches(r.topic, false))
      return verdict::allow;
  return verdict::undecided;
}

// A pattern with `%c` and `%u` replaced (a lone `%` stays).
std::string substitute(std::string_view pattern, std::string_view client_id,
                       const std::string* username) {
  std::string out;
  out.reserve(pattern.size());
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '%' && i + 1 < pattern.size()) {
      if (pattern[i + 1] == 'c') {
        out += client_id;
        ++i;
        continue;
      }
      if (pattern[i + 1] == 'u' && username) {
        out += *username;
        ++i;
        continue;
      }
    }
    out += pattern[i];
  }
  return out;
}

// What Mosquitto decides about `$` topics before any acl: nobody publishes
// on `$SYS` (but a bridge's state topic) or on `$share`.
bool dollar_publish_allowed(std::string_view topic) {
  if (topic.starts_with("$SYS"))
    return topic_matches("$SYS/broker/connection/+/state", topic);
  return !topic.starts_with("$share");
}

bool any_matches(const std::vector<std::string>& permits,
                 std::string_view topic) {
  for (const auto& permit : permits)
    if (topic_matches(permit, topic))
      return true;
  return false;
}

} // namespace

authenticator::authenticator(const hub_config& cfg)
  : allow_anonymous_(cfg.allow_anonymous),
    anonymous_loopback_only_(cfg.anonymous_loopback_only),
    files_(cfg.files ? cfg.files : read_mosquitto_files(cfg)),
    anonymous_lists_(cfg.anonymous_permissions),
    principals_(cfg.principals) {
  // policies_ points into principals_: no reallocation after this.
  principals_.reserve(principals_.size() + files_->users.size());
  for (const auto& p : principals_) {
    policies_.push_back({policy::lists, &p.pub, &p.sub, nullptr});
    warn_about(p);
  }
  add_file_users();
  if (anonymous_lists_) {
    anonymous_policy_ = {policy::lists, &anonymous_lists_->pub,
                         &anonymous_lists_->sub, nullptr};
  } else if (!files_->acl_path.empty()) {
    anonymous_policy_ = {policy::acl, nullptr, nullptr, &files_->acl.anonymous};
  }
}

void authenticator::warn_about(const principal_config& p) const {
  if (!is_password_hash(p.password))
    spdlog::warn("hub principal '{}' has a plain-text password in the "
                 "config; store a hash instead (hubflowctl passwd)",
                 p.username);
  else if (!parse_hash(p.password))
    spdlog::warn("hub principal '{}' has a password hash that is not in "
                 "mosquitto_passwd's $6$/$7$ format; it will never match",
                 p.username);
  if (auto s = files_->acl.users.find(p.username);
      s != files_->acl.users.end() && !s->second.empty())
    spdlog::warn("hub: the acl file's section for '{}' (line {}) does not "
                 "apply: hub.principals has '{}' with its own permissions",
                 p.username, s->second.front().line, p.username);
}

// Password-file users join after the config's principals: authenticate()
// finds the config's entry first, so it wins a name in both.
void authenticator::add_file_users() {
  auto yaml_count = principals_.size();
  for (const auto& u : files_->users) {
    auto same = std::find_if(principals_.begin(),
                             principals_.begin() + yaml_count,
                             [&](auto& p) { return p.username == u.username; });
    if (same != principals_.begin() + yaml_count) {
      spdlog::warn("hub: '{}' in {} (line {}) is also in hub.principals; the "
                   "config's entry applies",
                   u.username, files_->password_path, u.line);
      continue;
    }
    principals_.push_back({u.username, u.hash, {}, {}});
    policy pol; // no acl file: anything, as in Mosquitto
    if (!files_->acl_path.empty()) {
      auto s = files_->acl.users.find(u.username);
      pol = {policy::acl, nullptr, nullptr,
             s == files_->acl.users.end() ? nullptr : &s->second};
    }
    policies_.push_back(pol);
  }
}

const authenticator::policy&
authenticator::policy_of(const principal_config* p) const {
  if (p == nullptr)
    return anonymous_policy_;
  // Principals come from authenticate(), which points into principals_.
  return policies_[static_cast<std::size_t>(p - principals_.data())];
}

template <class Matches>
bool authenticator::acl_allows(client_identity who, const policy& pol,
                               std::uint8_t access, Matches matches) const {
  if (pol.section) {
    auto own = judge(*pol.section, access, matches);
    if (own != verdict::undecided)
      return own == verdict::allow;
  }
  const auto& patterns = files_->acl.patterns;
  if (patterns.empty())
    return false;
  const std::string* username = who.principal ? &who.principal->username
                                              : nullptr;
  // Mosquitto: a `+` or `#` in a name would widen the patterns it fills.
  if ((username && username->find_first_of("+#") != std::string::npos)
      || who.client_id.find_first_of("+#") != std::string_view::npos) {
    spdlog::debug("hub: acl patterns deny client '{}': a wildcard in its "
                  "username or client id",
                  who.client_id);
    return false;
  }
  auto expanded = [&](std::string_view pattern, bool is_deny) {
    if (pattern.find('%') == std::string_view::npos)
      return matches(pattern, is_deny); // nothing to fill in, no copy
    // A %u pattern does not apply to a client without a username.
    if (!username && pattern.find("%u") != std::string_view::npos)
      return false;
    return matches(substitute(pattern, who.client_id, username), is_deny);
  };
  return judge(patterns, access, expanded) == verdict::allow;
}

const principal_config* authenticator::authenticate(std::string_view user,
                                                    std::string_view password,
                                                    bool has_password,
                                                    bool from_loopback) const {
  // Principals are not tied to an address; only anonymous access is.
  (void) from_loopback;
  if (!has_password)
    return nullptr;
  for (const auto& p : principals_)
    if (p.username == user)
      return password_matches(p.password, password) ? &p : nullptr;
  return nullptr;
}

const principal_config*
authenticator::principal_named(std::string_view user) const {
  for (const auto& p : principals_)
    if (p.username == user)
      return &p;
  return nullptr;
}

bool authenticator::anonymous_allowed(bool from_loopback) const {
  return allow_anonymous_ && (from_loopback || !anonymous_loopback_only_);
}

bool authenticator::may_publish(client_identity who,
                                std::string_view topic) const {
  const auto& pol = policy_of(who.principal);
  switch (pol.kind) {
    case policy::everything:
      return who.principal != nullptr || allow_anonymous_;
    case policy::lists:
      return valid_topic_name(topic) && any_matches(*pol.pub, topic);
    case policy::acl:
      return dollar_publish_allowed(topic)
             && acl_allows(who, pol, acl_write,
                           [&](std::string_view rule, bool) {
                             return topic_matches(rule, topic);
                           });
  }
  return false;
}

bool authenticator::may_subscribe(client_identity who,
                                  std::string_view filter) const {
  const auto& pol = policy_of(who.principal);
  if (pol.kind == policy::everything)
    return who.principal != nullptr || allow_anonymous_;
  // `$share/<group>/<filter>` subscribes to <filter>.
  if (auto shared = parse_shared_filter(filter)) {
    if (!shared->valid)
      return false;
    filter = shared->filter;
  }
  if (pol.kind == policy::lists) {
    for (const auto& permit : *pol.sub)
      if (filter_covers(permit, filter))
        return true;
    return false;
  }
  // A deny line refuses only a filter it covers whole; a line that can
  // grant read on any of the filter's topics grants it (deliveries are
  // then checked one by one).
  return acl_allows(who, pol, acl_read, [&](std::string_view rule, bool deny) {
    return deny ? filter_covers(rule, filter) : filters_intersect(rule, filter);
  });
}

bool authenticator::may_receive(client_identity who,
                                std::string_view topic) const {
  const auto& pol = policy_of(who.principal);
  switch (pol.kind) {
    case policy::everything:
      return who.principal != nullptr || allow_anonymous_;
    case policy::lists:
      return any_matches(*pol.sub, topic);
    case policy::acl:
      return acl_allows(who, pol, acl_read, [&](std::string_view rule, bool) {
        return topic_matches(rule, topic);
      });
  }
  return false;
}

std::string make_password_hash(std::string_view password) {
  std::vector<unsigned char> salt(salt_bytes);
  if (RAND_bytes(salt.data(), static_cast<int>(salt.size())) != 1)
    throw std::runtime_error("no random bytes for a password salt");
  auto digest = pbkdf2_sha512(password, salt, default_iterations);
  return "$7$" + std::to_string(default_iterations) + "$"
         + base64_encode(as_text(salt.data(), salt.size())) + "$"
         + base64_encode(as_text(digest.data(), digest.size()));
}

bool valid_password_hash(std::string_view stored) {
  return parse_hash(stored).has_value();
}

bool is_password_hash(std::string_view stored) {
  return stored.substr(0, 3) == "$6$" || stored.substr(0, 3) == "$7$";
}

bool password_matches(std::string_view stored, std::string_view password) {
  if (!is_password_hash(stored))
    return equal_constant_time(stored.data(), stored.size(), password.data(),
                               password.size());
  auto hash = parse_hash(stored);
  if (!hash)
    return false;
  auto digest = hash->type == parsed_hash::sha512
                  ? salted_sha512(password, hash->salt)
                  : pbkdf2_sha512(password, hash->salt, hash->iterations);
  return equal_constant_time(digest.data(), digest.size(),
                             hash->digest.data(), hash->digest.size());
}

} // namespace hubflow
