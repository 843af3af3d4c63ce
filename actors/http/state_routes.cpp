#include "http/http_exchange.hpp"

#include <caf/all.hpp>

#include "core/type_ids.hpp"
#include "core/state_store.hpp"
#include "core/values.hpp"

// Dapr's state API over a state store actor (core/state_store.hpp).
namespace hubflow::http {

namespace {

/// An etag as sent in If-Match: quotes and a weak prefix removed.
std::string unquote_etag(std::string etag) {
  if (etag.rfind("W/", 0) == 0)
    etag.erase(0, 2);
  if (etag.size() >= 2 && etag.front() == '"' && etag.back() == '"')
    etag = etag.substr(1, etag.size() - 2);
  return etag;
}

bool parse_concurrency(const std::string& text, state_concurrency& out) {
  if (text.empty())
    out = state_concurrency::unspecified;
  else if (text == "first-write")
    out = state_concurrency::first_write;
  else if (text == "last-write")
    out = state_concurrency::last_write;
  else
    return false;
  return true;
}

/// HTTP status for a state store failure (documented in docs/http-api.md).
int state_status(const caf::error& err) {
  switch (state_error_code(err)) {
    case state_errc::etag_mismatch:
      return 409;
    case state_errc::etag_invalid:
    case state_errc::bad_request:
      return 400;
    case state_errc::unavailable:
      return 503;
    default:
      return 500;
  }
}

const http_state_store* find_store(http_broker* self, const reply_to& to,
                                   const std::string& name) {
  auto& stores = self->state.ctx->state_stores;
  auto i = stores.find(name);
  if (i != stores.end() && i->second.actor)
    return &i->second;
  respond_error(self, to, 400, "ERR_STATE_STORE_NOT_FOUND",
                "state store " + name + " is not found");
  return nullptr;
}

/// The string member `name` of `obj` into `out`; false if it is there but
/// not a string.
bool string_member(const json& obj, const char* name, std::string& out) {
  auto i = obj.find(name);
  if (i == obj.end() || i->is_null())
    return true;
  if (!i->is_string())
    return false;
  out = i->get<std::string>();
  return true;
}

/// Reads one item of a save or transaction: {key, value, etag?, options?,
/// metadata?}; `ttl_seconds` is the request's own metadata.ttlInSeconds,
/// for an item without one. Returns what is wrong, after `where`.
std::string read_item(const json& x, const std::string& where,
                      std::int64_t ttl_seconds, state_item& item) {
  if (!x.is_object())
    return where + "not an object";
  auto key = x.find("key");
  if (key == x.end() || !key->is_string() || key->get<std::string>().empty())
    return where + "\"key\" must be a non-empty string";
  item.key = key->get<std::string>();
  item.ttl_seconds = ttl_seconds;
  auto value = x.find("value");
  item.value = value == x.end() ? "null" : dump_json(*value);
  if (auto etag = x.find("etag"); etag != x.end() && !etag->is_null()) {
    if (etag->is_string())
      item.etag = unquote_etag(etag->get<std::string>());
    else if (etag->is_number_integer())
      item.etag = dump_json(*etag);
    else
      return where + "\"etag\" must be a string";
  }
  if (auto opts = x.find("options"); opts != x.end() && opts->is_object()) {
    std::string c;
    if (!string_member(*opts, "concurrency", c))
      return where + "options.concurrency must be a string";
    if (!parse_concurrency(c, item.concurrency))
      return where + "options.concurrency must be first-write or "
                     "last-write, not '" + c + "'";
    std::string consistency;
    if (!string_member(*opts, "consistency", consistency)
        || (!consistency.empty() && consistency != "eventual"
            && consistency != "strong"))
      return where + "options.consistency must be eventual or strong";
  }
  if (auto meta = x.find("metadata"); meta != x.end() && meta->is_object()) {
    if (auto ttl = meta->find("ttlInSeconds"); ttl != meta->end()) {
      std::optional<std::int64_t> seconds;
      if (ttl->is_string())
        seconds = parse_integer(ttl->get<std::string>());
      else if (ttl->is_number_integer())
        seconds = ttl->get<std::int64_t>();
      if (!seconds)
        return where + "metadata.ttlInSeconds must be an integer";
      item.ttl_seconds = *seconds;
    }
  }
  return {};
}

/// Reads Dapr's save body: [{key, value, ...}, ...] (see read_item).
std::string read_save_items(const json& doc, std::vector<state_item>& items,
                            std::int64_t ttl_seconds) {
  if (!doc.is_array())
    return "the body must be a JSON array of {key, value} objects";
  for (size_t i = 0; i < doc.size(); ++i) {
    state_item item;
    auto error = read_item(doc[i], "item " + std::to_string(i) + ": ",
                           ttl_seconds, item);
    if (!error.empty())
      return error;
    items.push_back(std::move(item));
  }
  return {};
}

/// Reads Dapr's transaction body: {operations: [{operation: upsert |
/// delete, request: {key, value?, etag?, options?, metadata?}}, ...]}.
std::string read_transaction(const json& doc, std::vector<state_item>& items,
                             std::int64_t ttl_seconds) {
  auto ops = doc.is_object() ? doc.find("operations") : doc.end();
  if (!doc.is_object() || ops == doc.end() || !ops->is_array())
    return "the body must be {\"operations\": [{\"operation\": \"upsert\" "
           "or \"delete\", \"request\": {\"key\": ...}}, ...]}";
  for (size_t i = 0; i < ops->size(); ++i) {
    auto& op = (*ops)[i];
    auto where = "operation " + std::to_string(i) + ": ";
    std::string kind;
    if (!op.is_object() || !string_member(op, "operation", kind)
        || (kind != "upsert" && kind != "delete"))
      return where + "\"operation\" must be upsert or delete";
    auto request = op.find("request");
    if (request == op.end())
      return where + "\"request\" is missing";
    state_item item;
    auto error = read_item(*request, where + "request: ", ttl_seconds, item);
    if (!error.empty())
      return error;
    item.remove = kind == "delete";
    items.push_back(std::move(item));
  }
  return {};
}

} // namespace

namespace {

/// Saves what `read` makes of the request body in one atomic step of the
/// store: a save (ERR_STATE_SAVE) or a transaction (ERR_STATE_TRANSACTION).
void write_items(http_broker* self, const reply_to& to, const http_request& req,
                 const std::string& store_name,
                 std::string (*read)(const json&, std::vector<state_item>&,
                                     std::int64_t),
                 const char* error_code, const char* what) {
  auto store = find_store(self, to, store_name);
  if (!store)
    return;
  std::string error;
  auto doc = parse_body(self, req, error);
  // Request metadata in the query (`?metadata.ttlInSeconds=5`: what the
  // SDKs send for save(…, {metadata})) applies to every item.
  std::int64_t ttl = 0;
  if (auto text = param(req, "metadata.ttlInSeconds");
      error.empty() && !text.empty()) {
    if (auto seconds = parse_integer(text))
      ttl = *seconds;
    else
      error = "metadata.ttlInSeconds must be an integer, not '" + text + "'";
  }
  std::vector<state_item> items;
  if (error.empty())
    error = read(doc, items, ttl);
  if (!error.empty())
    return respond_error(self, to, 400, "ERR_MALFORMED_REQUEST", error);
  self->request(store->actor, self->state.ctx->request_timeout,
                state_save_atom::value, std::move(items))
    .then(
      [=](ok_atom) {
        answering(self, to, [&] { respond(self, to, 204, "", ""); });
      },
      [=](caf::error& err) {
        answering(self, to, [&] {
          respond_error(self, to, state_status(err), error_code,
                        std::string{what} + " in state store " + store_name
                          + ": " + error_text(err));
        });
      });
}

} // namespace

void state_save(http_broker* self, const reply_to& to, const http_request& req,
                const std::string& store_name) {
  write_items(self, to, req, store_name, read_save_items, "ERR_STATE_SAVE",
              "failed saving state");
}

void state_transaction(http_broker* self, const reply_to& to,
                       const http_request& req, const std::string& store_name) {
  write_items(self, to, req, store_name, read_transaction,
              "ERR_STATE_TRANSACTION", "failed executing the transaction");
}

void state_get(http_broker* self, const reply_to& to, const std::string& store_name,
               const std::string& key) {
  auto store = find_store(self, to, store_name);
  if (!store)
    return;
  self->request(store->actor, self->state.ctx->request_timeout,
                state_get_atom::value, std::vector<std::string>{key})
    .then(
      [=](std::vector<state_entry>& entries) {
        answering(self, to, [&] {
          if (entries.empty() || !entries[0].found)
            return respond(self, to, 204, "", "");
          respond(self, to, 200, "application/json", entries[0].value,
                  {{"ETag", entries[0].etag}});
        });
      },
      [=](caf::error& err) {
        answering(self, to, [&] {
          respond_error(self, to, state_status(err), "ERR_STATE_GET",
                        "failed getting state with key " + key
                          + " from state store " + store_name + ": "
                          + error_text(err));
        });
      });
}

void state_bulk_get(http_broker* self, const reply_to& to,
                    const http_request& req, const std::string& store_name) {
  auto store = find_store(self, to, store_name);
  if (!store)
    return;
  std::string error;
  auto doc = parse_body(self, req, error);
  if (!error.empty())
    return respond_error(self, to, 400, "ERR_MALFORMED_REQUEST", error);
  std::vector<std::string> keys;
  bool valid = doc.is_object() && doc.contains("keys") && doc["keys"].is_array();
  if (valid)
    for (auto& k : doc["keys"]) {
      if (!k.is_string()) {
        valid = false;
        break;
      }
      keys.push_back(k.get<std::string>());
    }
  if (!valid)
    return respond_error(self, to, 400, "ERR_MALFORMED_REQUEST",
                         "the body must be {\"keys\": [\"key\", ...]}");
  auto depth = self->state.limits.max_json_depth;
  self->request(store->actor, self->state.ctx->request_timeout,
                state_get_atom::value, std::move(keys))
    .then(
      [=](std::vector<state_entry>& entries) {
        answering(self, to, [&] {
          json out = json::array();
          for (auto& e : entries) {
            json item{{"key", e.key}};
            if (e.found) {
              // Values are stored as JSON text; anything else written into
              // Redis by other tools (or nested too deep to embed) comes
              // back as a string.
              auto data = parse_json_bounded(e.value, depth);
              item["data"] = data.is_discarded() ? json(e.value) : data;
              item["etag"] = e.etag;
            }
            out.push_back(std::move(item));
          }
          respond(self, to, 200, "application/json", dump_json(out));
        });
      },
      [=](caf::error& err) {
        answering(self, to, [&] {
          respond_error(self, to, state_status(err), "ERR_STATE_BULK_GET",
                        "failed getting state from state store " + store_name
                          + ": " + error_text(err));
        });
      });
}

void state_delete(http_broker* self, const reply_to& to,
                  const http_request& req, const std::string& store_name,
                  const std::string& key) {
  auto store = find_store(self, to, store_name);
  if (!store)
    return;
  state_item item;
  item.key = key;
  if (auto etag = req.header("if-match"))
    item.etag = unquote_etag(*etag);
  auto c = param(req, "concurrency");
  if (!parse_concurrency(c, item.concurrency))
    return respond_error(self, to, 400, "ERR_MALFORMED_REQUEST",
                         "concurrency must be first-write or last-write, not '"
                           + c + "'");
  self->request(store->actor, self->state.ctx->request_timeout,
                state_delete_atom::value, std::move(item))
    .then(
      [=](ok_atom) {
        answering(self, to, [&] { respond(self, to, 204, "", ""); });
      },
      [=](caf::error& err) {
        answering(self, to, [&] {
          respond_error(self, to, state_status(err), "ERR_STATE_DELETE",
                        "failed deleting state with key " + key
                          + " from state store " + store_name + ": "
                          + error_text(err));
        });
      });
}

} // namespace hubflow::http
