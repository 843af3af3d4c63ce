#include "hub/topic_tree.hpp"

#include <algorithm>
#include <optional>

namespace hubflow::mqtt {

namespace {

struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};

template <class Node>
using child_map = std::unordered_map<std::string, std::unique_ptr<Node>,
                                     string_hash, std::equal_to<>>;

} // namespace

// -- topic_tree ---------------------------------------------------------------

struct topic_tree::node {
  node* parent = nullptr;
  std::string key;
  child_map<node> children;
  std::vector<subscription> subs;
  std::vector<shared_group> groups;

  bool empty() const {
    return children.empty() && subs.empty() && groups.empty();
  }
};

topic_tree::topic_tree() : root_(std::make_unique<node>()) {
}

topic_tree::~topic_tree() = default;

topic_tree::node* topic_tree::find_node(std::string_view filter, bool create) {
  auto n = root_.get();
  std::size_t start = 0;
  for (;;) {
    auto end = filter.find('/', start);
    auto level = filter.substr(start, end == std::string_view::npos
                                        ? std::string_view::npos
                                        : end - start);
    auto i = n->children.find(level);
    if (i == n->children.end()) {
      if (!create)
        return nullptr;
      auto child = std::make_unique<node>();
      child->parent = n;
      child->key = std::string{level};
      i = n->children.emplace(child->key, std::move(child)).first;
    }
    n = i->second.get();
    if (end == std::string_view::npos)
      return n;
    start = end + 1;
  }
}

void topic_tree::prune(node* n) {
  while (n != root_.get() && n->empty()) {
    auto parent = n->parent;
    parent->children.erase(n->key); // destroys n
    n = parent;
  }
}

bool topic_tree::subscribe(std::string_view filter, subscriber_id who,
                           const subscription_options& opts,
                           std::uint32_t subscription_id) {
  subscription s{who, opts, subscription_id};
  auto shared = parse_shared_filter(filter);
  auto n = find_node(shared ? shared->filter : filter, true);
  std::vector<subscription>* list = &n->subs;
  if (shared) {
    auto g = std::find_if(n->groups.begin(), n->groups.end(),
                          [&](auto& x) { return x.name == shared->group; });
    if (g == n->groups.end()) {
      n->groups.push_back(shared_group{std::string{shared->group}, {}, 0});
      g = n->groups.end() - 1;
    }
    list = &g->members;
  }
  auto i = std::find_if(list->begin(), list->end(),
                        [&](auto& x) { return x.who == who; });
  if (i != list->end()) {
    *i = s;
    return false;
  }
  list->push_back(s);
  ++size_;
  return true;
}

bool topic_tree::unsubscribe(std::string_view filter, subscriber_id who) {
  auto shared = parse_shared_filter(filter);
  auto n = find_node(shared ? shared->filter : filter, false);
  if (!n)
    return false;
  auto erase_from = [&](std::vector<subscription>& list) {
    auto i = std::find_if(list.begin(), list.end(),
                          [&](auto& x) { return x.who == who; });
    if (i == list.end())
      return false;
    list.erase(i);
    --size_;
    return true;
  };
  bool removed = false;
  if (shared) {
    auto g = std::find_if(n->groups.begin(), n->groups.end(),
                          [&](auto& x) { return x.name == shared->group; });
    if (g != n->groups.end()) {
      removed = erase_from(g->members);
      if (g->members.empty())
        n->groups.erase(g);
    }
  } else {
    removed = erase_from(n->subs);
  }
  prune(n);
  return removed;
}

void topic_tree::add_plain(const subscription& s,
                           std::vector<match_result>& out) {
  // Overlapping subscriptions of one subscriber yield one delivery with the
  // highest qos and every subscription identifier (MQTT 5, 3.3.4).
  for (auto& m : out) {
    if (m.who == s.who && !m.shared) {
      if (s.opts.qos > m.opts.qos)
        m.opts.qos = s.opts.qos;
      m.opts.retain_as_published |= s.opts.retain_as_published;
      m.opts.no_local &= s.opts.no_local;
      if (s.id)
        m.subscription_ids.push_back(s.id);
      return;
    }
  }
  auto& m = out.emplace_back();
  m.who = s.who;
  m.opts = s.opts;
  if (s.id)
    m.subscription_ids.push_back(s.id);
}

void topic_tree::add_shared(shared_group& g, std::vector<match_result>& out,
                            availability_fn available, void* context) {
  auto count = g.members.size();
  if (count == 0)
    return;
  auto pick = g.next % count;
  if (available) {
    for (std::size_t k = 0; k < count; ++k) {
      auto idx = (g.next + k) % count;
      if (available(context, g.members[idx].who)) {
        pick = idx;
        break;
      }
    }
  }
  g.next = pick + 1;
  auto& s = g.members[pick];
  auto& m = out.emplace_back();
  m.who = s.who;
  m.opts = s.opts;
  m.opts.no_local = false; // not allowed on shared subscriptions
  m.shared = true;
  if (s.id)
    m.subscription_ids.push_back(s.id);
}

void topic_tree::match(std::string_view topic, std::vector<match_result>& out,
                       availability_fn available, void* context) {
  out.clear();
  if (size_ == 0)
    return;
  split_levels(topic, levels_);
  // Wildcards at the first level never match topics starting with '$'.
  bool dollar = !levels_[0].empty() && levels_[0][0] == '$';
  auto add_all = [&](node* x) {
    for (auto& s : x->subs)
      add_plain(s, out);
    for (auto& g : x->groups)
      add_shared(g, out, available, context);
  };
  // Depth first with an explicit stack; the exact level's subtree is
  // visited before the '+' one's, as a recursive walk would.
  pending_.clear();
  pending_.emplace_back(root_.get(), 0);
  while (!pending_.empty()) {
    auto [n, i] = pending_.back();
    pending_.pop_back();
    bool wildcards = !(dollar && i == 0);
    if (wildcards) {
      if (auto h = n->children.find(std::string_view{"#"});
          h != n->children.end())
        add_all(h->second.get());
    }
    if (i == levels_.size()) {
      add_all(n);
      continue;
    }
    if (wildcards) {
      if (auto p = n->children.find(std::string_view{"+"});
          p != n->children.end())
        pending_.emplace_back(p->second.get(), i + 1);
    }
    if (auto c = n->children.find(levels_[i]); c != n->children.end())
      pending_.emplace_back(c->second.get(), i + 1);
  }
}

// -- retained_store -----------------------------------------------------------

struct retained_store::node {
  node* parent = nullptr;
  std::string key;
  child_map<node> children;
  std::optional<message> msg;
};

retained_store::retained_store() : root_(std::make_unique<node>()) {
}

retained_store::~retained_store() = default;

void retained_store::set(const message& msg) {
  std::vector<std::string_view> levels;
  split_levels(msg.topic, levels);
  auto n = root_.get();
  if (msg.body.empty()) {
    for (auto level : levels) {
      auto i = n->children.find(level);
      if (i == n->children.end())
        return;
      n = i->second.get();
    }
    if (!n->msg)
      return;
    n->msg.reset();
    --size_;
    while (n != root_.get() && !n->msg && n->children.empty()) {
      auto parent = n->parent;
      parent->children.erase(n->key);
      n = parent;
    }
    return;
  }
  for (auto level : levels) {
    auto i = n->children.find(level);
    if (i == n->children.end()) {
      auto child = std::make_unique<node>();
      child->parent = n;
      child->key = std::string{level};
      i = n->children.emplace(child->key, std::move(child)).first;
    }
    n = i->second.get();
  }
  if (!n->msg)
    ++size_;
  n->msg = msg;
  n->msg->retain = true;
}

const message* retained_store::find(std::string_view topic) const {
  std::vector<std::string_view> levels;
  split_levels(topic, levels);
  auto n = root_.get();
  for (auto level : levels) {
    auto i = n->children.find(level);
    if (i == n->children.end())
      return nullptr;
    n = i->second.get();
  }
  return n->msg ? &*n->msg : nullptr;
}

void retained_store::collect_all(const node* n, bool root,
                                 std::vector<message>& out) const {
  std::vector<const node*> pending;
  for (auto& [key, child] : n->children)
    if (!(root && !key.empty() && key[0] == '$'))
      pending.push_back(child.get());
  while (!pending.empty()) {
    auto x = pending.back();
    pending.pop_back();
    if (x->msg)
      out.push_back(*x->msg);
    for (auto& [key, child] : x->children)
      pending.push_back(child.get());
  }
}

void retained_store::match(std::string_view filter,
                           std::vector<message>& out) const {
  if (size_ == 0)
    return;
  std::vector<std::string_view> levels;
  split_levels(filter, levels);
  // (node, next level): iterative, so no depth of filter reaches the stack.
  std::vector<std::pair<const node*, std::size_t>> pending{{root_.get(), 0}};
  while (!pending.empty()) {
    auto [n, i] = pending.back();
    pending.pop_back();
    bool root = i == 0;
    if (i == levels.size()) {
      if (n->msg)
        out.push_back(*n->msg);
      continue;
    }
    auto level = levels[i];
    if (level == "#") {
      // "a/#" matches "a" itself and everything below it.
      if (!root && n->msg)
        out.push_back(*n->msg);
      collect_all(n, root, out);
      continue;
    }
    if (level == "+") {
      for (auto& [key, child] : n->children) {
        if (root && !key.empty() && key[0] == '$')
          continue;
        pending.emplace_back(child.get(), i + 1);
      }
      continue;
    }
    if (auto c = n->children.find(level); c != n->children.end())
      pending.emplace_back(c->second.get(), i + 1);
  }
}

} // namespace hubflow::mqtt
