// The state store protocol (Dapr's state API semantics), spoken by the Redis
// endpoint and used by the HTTP API:
//   (state_save_atom, std::vector<state_item>)  -> ok_atom
//       all items or none (one atomic step in the store); an item with
//       `remove` deletes its key: a save is also Dapr's transaction;
//   (state_get_atom, std::vector<std::string> keys) -> std::vector<state_entry>
//       in the order of `keys`; a missing key has found == false;
//   (state_delete_atom, state_item) -> ok_atom (key, etag, concurrency used;
//       deleting a missing key without an etag succeeds).
// Failures are caf::errors of category "state" (see state_errc), their
// context holding one std::string with a message for humans.
//
// Concurrency (etag = the stored version, a decimal number):
//   unspecified: an etag, when given, must match; without one, write.
//   first_write: an etag, when given, must match; without one, the key must
//                not exist yet (the first writer wins).
//   last_write:  any etag is ignored; always write.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/make_message.hpp>
#include <caf/meta/load_callback.hpp>
#include <caf/meta/type_name.hpp>

namespace hubflow {

using state_save_atom = caf::atom_constant<caf::atom("st_save")>;
using state_get_atom = caf::atom_constant<caf::atom("st_get")>;
using state_delete_atom = caf::atom_constant<caf::atom("st_delete")>;

enum class state_concurrency : std::uint8_t {
  unspecified,
  first_write,
  last_write,
};

/// One value to save (or a key to delete). `value` holds JSON text, stored
/// and returned byte for byte.
struct state_item {
  std::string key;
  std::string value;
  std::string etag; // empty: none given
  state_concurrency concurrency = state_concurrency::unspecified;
  /// Dapr's `metadata.ttlInSeconds`: > 0 expires the key after that many
  /// seconds; 0 or -1 keeps it forever (a new save clears an older TTL).
  std::int64_t ttl_seconds = 0;
  /// In a save: delete the key instead (a transaction's delete operation;
  /// its etag is checked like a save's).
  bool remove = false;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f,
                                                 state_item& x) {
    auto c = static_cast<std::uint8_t>(x.concurrency);
    auto load = caf::meta::load_callback([&]() -> caf::error {
      x.concurrency = static_cast<state_concurrency>(c);
      return caf::none;
    });
    return f(caf::meta::type_name("state_item"), x.key, x.value, x.etag, c,
             x.ttl_seconds, x.remove, load);
  }
};

struct state_entry {
  std::string key;
  bool found = false;
  std::string value; // JSON text as saved
  std::string etag;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f,
                                                 state_entry& x) {
    return f(caf::meta::type_name("state_entry"), x.key, x.found, x.value,
             x.etag);
  }
};

enum class state_errc : std::uint8_t {
  etag_mismatch = 1, // stale etag, or first-write on an existing key
  etag_invalid,      // not a version this store could have issued
  bad_request,       // e.g. an empty key
  unavailable,       // the store cannot be reached right now
  failed,            // the store answered with an error
};

inline constexpr caf::atom_value state_error_category = caf::atom("state");

inline caf::error make_state_error(state_errc code, std::string text) {
  return caf::error{static_cast<std::uint8_t>(code), state_error_category,
                    caf::make_message(std::move(text))};
}

/// The state_errc of `err`, or state_errc::failed for foreign errors
/// (e.g. a request timeout).
inline state_errc state_error_code(const caf::error& err) {
  if (err.category() == state_error_category)
    return static_cast<state_errc>(err.code());
  return state_errc::failed;
}

/// The human-readable text of an error whose context is one string (state
/// errors, and most of hubflow's own), else CAF's rendering.
inline std::string error_text(const caf::error& err) {
  const auto& ctx = err.context();
  if (ctx.size() == 1 && ctx.match_element<std::string>(0))
    return ctx.get_as<std::string>(0);
  return caf::to_string(err);
}

} // namespace hubflow
