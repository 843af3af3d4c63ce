// The subscription trie and the retained store against a plain model that
// only knows topic_matches(). The input is a sequence of operations, each an
// opcode byte followed by its operands (subscriber, options, a filter or
// topic as a length-prefixed string):
//   subscribe, unsubscribe, match     on a topic_tree,
//   set (or clear), match, find       on a retained_store.
// Filters and topics are validated first, as a client connection does
// before it touches either structure, with the deepest bound the config
// allows (hub.max_topic_levels: 1000). Checked after
// every operation: the return values and size(), and that match() reaches
// exactly the subscribers and retained messages the model says.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "fuzz_input.hpp"
#include "hub/topic_tree.hpp"

using namespace hubflow;
using namespace hubflow::mqtt;
using hubflow::fuzz::check;

namespace {

struct model_subscription {
  subscription_options opts;
  std::uint32_t id;
};

/// (group or "" for a plain subscription, filter, subscriber).
using subscription_key = std::tuple<std::string, std::string, subscriber_id>;

struct model {
  std::map<subscription_key, model_subscription> subs;
  std::map<std::string, std::string> retained; // topic -> payload
};

const topic_limits limits{1000, 65535};

/// What the hub accepts as a filter from a client (connection.cpp): a
/// valid filter that is not a malformed `$share/` form.
bool acceptable_filter(std::string_view filter) {
  auto shared = parse_shared_filter(filter);
  return valid_topic_filter(filter, limits) && !(shared && !shared->valid);
}

subscription_key key_of(std::string_view filter, subscriber_id who) {
  if (auto shared = parse_shared_filter(filter))
    return {std::string{shared->group}, std::string{shared->filter}, who};
  return {"", std::string{filter}, who};
}

void check_match(topic_tree& tree, const model& m, std::string_view topic) {
  std::vector<match_result> out;
  tree.match(topic, out);
  // Plain: one result per subscriber, highest qos, every identifier.
  std::map<subscriber_id, match_result> plain;
  // Shared: one result per group and filter, from its members.
  std::map<std::pair<std::string, std::string>, std::set<subscriber_id>> groups;
  for (auto& [key, s] : m.subs) {
    auto& [group, filter, who] = key;
    if (!topic_matches(filter, topic))
      continue;
    if (!group.empty()) {
      groups[{group, filter}].insert(who);
      continue;
    }
    auto [i, fresh] = plain.try_emplace(who);
    auto& r = i->second;
    if (fresh) {
      r.who = who;
      r.opts = s.opts;
    } else {
      r.opts.qos = std::max(r.opts.qos, s.opts.qos);
    }
    if (s.id)
      r.subscription_ids.push_back(s.id);
  }
  std::size_t shared_results = 0;
  for (auto& r : out) {
    if (r.shared) {
      ++shared_results;
      auto member = std::any_of(groups.begin(), groups.end(), [&](auto& g) {
        return g.second.count(r.who) > 0;
      });
      check(member, "a shared result from no matching group");
      continue;
    }
    auto i = plain.find(r.who);
    check(i != plain.end(), "match reached a subscriber that does not match");
    check(r.opts.qos == i->second.opts.qos, "match gave the wrong qos");
    auto ids = r.subscription_ids;
    auto want = i->second.subscription_ids;
    std::sort(ids.begin(), ids.end());
    std::sort(want.begin(), want.end());
    check(ids == want, "match gave the wrong subscription identifiers");
    plain.erase(i); // a second result for the same subscriber fails above
  }
  check(plain.empty(), "match missed a subscriber");
  check(shared_results == groups.size(), "match gave the wrong shared groups");
}

void check_retained_match(const retained_store& store, const model& m,
                          std::string_view filter) {
  std::vector<message> out;
  store.match(filter, out);
  std::multiset<std::string> got;
  for (auto& msg : out) {
    got.insert(msg.topic);
    check(msg.retain, "a retained message without the retain flag");
    check(msg.body.view() == m.retained.at(msg.topic),
          "a retained message with the wrong payload");
  }
  std::multiset<std::string> want;
  for (auto& [topic, body] : m.retained)
    if (topic_matches(filter, topic))
      want.insert(topic);
  check(got == want, "retained match differs from topic_matches");
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  hubflow::fuzz::input in{data, size};
  topic_tree tree;
  retained_store store;
  model m;
  while (!in.empty()) {
    auto op = in.byte() % 6;
    switch (op) {
      case 0: { // subscribe
        subscriber_id who = in.byte() % 8;
        auto o = in.byte();
        subscription_options opts;
        opts.qos = o % 3;
        opts.no_local = (o & 4) != 0;
        opts.retain_as_published = (o & 8) != 0;
        opts.retain_handling = (o >> 4) % 3;
        std::uint32_t id = in.byte();
        auto filter = in.string();
        if (!acceptable_filter(filter))
          break;
        auto fresh = m.subs.insert_or_assign(key_of(filter, who),
                                             model_subscription{opts, id})
                       .second;
        check(tree.subscribe(filter, who, opts, id) == fresh,
              "subscribe says new for an existing subscription or not new");
        break;
      }
      case 1: { // unsubscribe
        subscriber_id who = in.byte() % 8;
        auto filter = in.string();
        if (!acceptable_filter(filter))
          break;
        auto existed = m.subs.erase(key_of(filter, who)) > 0;
        check(tree.unsubscribe(filter, who) == existed,
              "unsubscribe disagrees on whether the subscription existed");
        break;
      }
      case 2: { // match
        auto topic = in.string();
        if (valid_topic_name(topic, limits))
          check_match(tree, m, topic);
        break;
      }
      case 3: { // retained set or clear
        auto topic = in.string();
        auto body = in.string();
        if (!valid_topic_name(topic, limits))
          break;
        message msg;
        msg.topic = std::string{topic};
        msg.body = payload{std::string{body}};
        store.set(msg);
        if (body.empty())
          m.retained.erase(msg.topic);
        else
          m.retained[msg.topic] = std::string{body};
        break;
      }
      case 4: { // retained match
        auto filter = in.string();
        if (valid_topic_filter(filter, limits) && !parse_shared_filter(filter))
          check_retained_match(store, m, filter);
        break;
      }
      case 5: { // retained find
        auto topic = in.string();
        if (!valid_topic_name(topic, limits))
          break;
        auto found = store.find(topic);
        auto i = m.retained.find(std::string{topic});
        check((found != nullptr) == (i != m.retained.end()),
              "find disagrees on whether a message is retained");
        if (found)
          check(found->body.view() == i->second, "find gave the wrong payload");
        break;
      }
    }
    check(tree.size() == m.subs.size(), "topic_tree::size is wrong");
    check(store.size() == m.retained.size(), "retained_store::size is wrong");
  }
  return 0;
}
