// The subscription trie the sessions consult on every publish (with per
// subscription options and `$share/group/filter` groups served round
// robin), and the retained message store. What a valid topic or filter is
// and how one matches the other are core/topic.hpp's.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/topic.hpp"
#include "hub/mqtt_codec.hpp"

namespace hubflow::mqtt {

/// Who subscribed: a session or an in-process (rule) subscriber, as the hub
/// numbers them.
using subscriber_id = std::uint64_t;

/// One subscriber reached by one publish: the options of the (strongest)
/// matching subscription and all subscription identifiers that matched.
struct match_result {
  subscriber_id who = 0;
  subscription_options opts;
  std::vector<std::uint32_t> subscription_ids;
  bool shared = false;
};

/// Lets the trie skip offline members of a shared group when an online one
/// exists.
using availability_fn = bool (*)(void* context, subscriber_id who);

class topic_tree {
public:
  topic_tree();
  ~topic_tree();
  topic_tree(const topic_tree&) = delete;
  topic_tree& operator=(const topic_tree&) = delete;

  /// Adds a subscription or replaces the options of an existing one of
  /// `who` on the same filter (`$share/...` filters join a group). Returns
  /// true when it did not exist before. `subscription_id` 0 means none.
  bool subscribe(std::string_view filter, subscriber_id who,
                 const subscription_options& opts,
                 std::uint32_t subscription_id = 0);

  /// Removes `who`'s subscription on `filter`; false when there was none.
  bool unsubscribe(std::string_view filter, subscriber_id who);

  /// Appends one result per subscriber matching `topic` to `out` (cleared
  /// first): for plain subscriptions the highest qos among the matching
  /// ones with every subscription identifier; for each shared group one
  /// member, chosen round robin (preferring available ones).
  void match(std::string_view topic, std::vector<match_result>& out,
             availability_fn available = nullptr, void* context = nullptr);

  /// Number of subscriptions (shared members included).
  std::size_t size() const noexcept {
    return size_;
  }

private:
  struct node;
  struct subscription {
    subscriber_id who;
    subscription_options opts;
    std::uint32_t id;
  };
  struct shared_group {
    std::string name;
    std::vector<subscription> members;
    std::size_t next = 0;
  };

  node* find_node(std::string_view filter, bool create);
  void prune(node* n);
  void add_plain(const subscription& s, std::vector<match_result>& out);
  void add_shared(shared_group& g, std::vector<match_result>& out,
                  availability_fn available, void* context);

  std::unique_ptr<node> root_;
  std::size_t size_ = 0;
  std::vector<std::string_view> levels_; // scratch for match()
  /// Nodes still to visit in match(): the walk is iterative, so no depth
  /// of topic reaches the stack.
  std::vector<std::pair<node*, std::size_t>> pending_;
};

/// Retained messages by topic: set, clear (empty payload) and find all
/// matching a filter when a client subscribes.
class retained_store {
public:
  retained_store();
  ~retained_store();
  retained_store(const retained_store&) = delete;
  retained_store& operator=(const retained_store&) = delete;

  /// Stores `msg` as the retained message of its topic, or removes the
  /// retained message when the payload is empty.
  void set(const message& msg);

  /// Appends every retained message whose topic matches `filter`.
  void match(std::string_view filter, std::vector<message>& out) const;

  /// The retained message of `topic`, if any.
  const message* find(std::string_view topic) const;

  std::size_t size() const noexcept {
    return size_;
  }

private:
  struct node;
  /// Appends the messages of every node below `n` (iteratively).
  void collect_all(const node* n, bool root, std::vector<message>& out) const;

  std::unique_ptr<node> root_;
  std::size_t size_ = 0;
};

} // namespace hubflow::mqtt
