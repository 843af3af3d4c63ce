#include "functions/sql/sql_evaluator.hpp"

#include <cmath>
#include <limits>

#include "core/json_text.hpp"
#include "core/topic.hpp"

namespace hubflow::sql {

namespace {

/// NULL in three-valued logic: anything that is not a boolean.
std::optional<bool> truth(const json& v) {
  if (v.is_boolean())
    return v.get<bool>();
  return std::nullopt;
}

/// NOT in three-valued logic: NOT NULL is NULL.
json logical_not(const json& v) {
  return v.is_boolean() ? json(!v.get<bool>()) : json();
}

json walk(const json* at, const std::vector<path_step>& path) {
  for (auto& step : path) {
    if (!at)
      return nullptr;
    if (!step.is_index()) {
      if (!at->is_object())
        return nullptr;
      auto i = at->find(step.name);
      at = i == at->end() ? nullptr : &*i;
    } else {
      if (!at->is_array())
        return nullptr;
      auto size = static_cast<std::int64_t>(at->size());
      auto i = step.index > 0 ? step.index - 1 : size + step.index;
      at = (i >= 0 && i < size) ? &(*at)[static_cast<std::size_t>(i)] : nullptr;
    }
  }
  return at ? *at : json();
}

/// SQL's topic(n): the n-th level counted from 1, as in topic templates
/// (the same function), NULL beyond the last level.
json topic_level(std::string_view topic, const json& n) {
  if (!n.is_number_integer() || n.get<std::int64_t>() < 1)
    return nullptr;
  auto level =
    hubflow::topic_level(topic, static_cast<std::size_t>(n.get<std::int64_t>()));
  return level ? json(std::string{*level}) : json(nullptr);
}

json call(const expr& e, const row_context& ctx) {
  switch (e.function) {
    case builtin::qos:
      return ctx.msg.qos;
    case builtin::topic:
      if (e.operands.empty())
        return ctx.msg.topic;
      return topic_level(ctx.msg.topic, evaluate(*e.operands[0], ctx));
    case builtin::clientid:
      return ctx.msg.origin;
    case builtin::timestamp:
      return ctx.msg.received_ms();
  }
  return nullptr;
}

json arithmetic(op oper, const json& a, const json& b) {
  if (oper == op::add && a.is_string() && b.is_string())
    return a.get<std::string>() + b.get<std::string>();
  if (!a.is_number() || !b.is_number())
    return nullptr;
  if (a.is_number_integer() && b.is_number_integer()) {
    auto x = a.get<std::int64_t>();
    auto y = b.get<std::int64_t>();
    std::int64_t r = 0;
    switch (oper) {
      case op::add:
        if (!__builtin_add_overflow(x, y, &r))
          return r;
        break;
      case op::subtract:
        if (!__builtin_sub_overflow(x, y, &r))
          return r;
        break;
      case op::multiply:
        if (!__builtin_mul_overflow(x, y, &r))
          return r;
        break;
      case op::divide:
        if (y == 0)
          return nullptr;
        // Exact quotients stay integers; 7 / 2 is 3.5, not SQL's 3.
        if (!(x == std::numeric_limits<std::int64_t>::min() && y == -1)
            && x % y == 0)
          return x / y;
        break;
      case op::modulo:
        if (y == 0)
          return nullptr;
        if (y == -1)
          return 0;
        return x % y;
      default:
        return nullptr;
    }
    // Overflowing integers continue as doubles, like JSON numbers do.
  }
  auto x = a.get<double>();
  auto y = b.get<double>();
  switch (oper) {
    case op::add:
      return x + y;
    case op::subtract:
      return x - y;
    case op::multiply:
      return x * y;
    case op::divide:
      return y == 0 ? json() : json(x / y);
    case op::modulo:
      return y == 0 ? json() : json(std::fmod(x, y));
    default:
      return nullptr;
  }
}

/// -1, 0, 1 for comparable values; nullopt when they have no order.
std::optional<int> order(const json& a, const json& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_number_integer() && b.is_number_integer()) {
      auto x = a.get<std::int64_t>(), y = b.get<std::int64_t>();
      return (x > y) - (x < y);
    }
    auto x = a.get<double>(), y = b.get<double>();
    return (x > y) - (x < y);
  }
  if (a.is_string() && b.is_string()) {
    auto c = a.get_ref<const std::string&>().compare(b.get_ref<const std::string&>());
    return (c > 0) - (c < 0);
  }
  return std::nullopt;
}

/// SQL equality: NULL when either side is NULL; numbers compare by value
/// (1 = 1.0); values of different types are simply not equal.
json equals(const json& a, const json& b) {
  if (a.is_null() || b.is_null())
    return nullptr;
  if (auto o = order(a, b))
    return *o == 0;
  return a == b;
}

json compare(op oper, const json& a, const json& b) {
  if (oper == op::equal)
    return equals(a, b);
  if (oper == op::not_equal)
    return logical_not(equals(a, b));
  auto o = order(a, b);
  if (!o)
    return nullptr;
  switch (oper) {
    case op::less:
      return *o < 0;
    case op::less_equal:
      return *o <= 0;
    case op::greater:
      return *o > 0;
    case op::greater_equal:
      return *o >= 0;
    default:
      return nullptr;
  }
}

json binary(const expr& e, const row_context& ctx) {
  auto lhs = evaluate(*e.operands[0], ctx);
  if (e.oper == op::and_ || e.oper == op::or_) {
    // FALSE decides AND and TRUE decides OR, even against NULL.
    bool decisive = e.oper == op::or_;
    auto a = truth(lhs);
    if (a == decisive)
      return decisive;
    auto b = truth(evaluate(*e.operands[1], ctx));
    if (b == decisive)
      return decisive;
    return a && b ? json(!decisive) : json();
  }
  auto rhs = evaluate(*e.operands[1], ctx);
  switch (e.oper) {
    case op::add:
    case op::subtract:
    case op::multiply:
    case op::divide:
    case op::modulo:
      return arithmetic(e.oper, lhs, rhs);
    default:
      return compare(e.oper, lhs, rhs);
  }
}

json negate_if(bool negated, const json& v) {
  if (!negated || !v.is_boolean())
    return v;
  return !v.get<bool>();
}

/// Length of the UTF-8 sequence starting with byte `c` (1 for stray bytes).
std::size_t utf8_length(unsigned char c) {
  if (c >= 0xF0 && c < 0xF8)
    return 4;
  if (c >= 0xE0)
    return c < 0xF0 ? 3 : 1;
  if (c >= 0xC0)
    return 2;
  return 1;
}

} // namespace

bool like_match(std::string_view text, std::string_view pattern) {
  // Greedy matching with one backtrack point (the last '%'), linear-ish and
  // without recursion.
  std::size_t t = 0, p = 0;
  std::size_t star_p = std::string_view::npos, star_t = 0;
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '%') {
      star_p = p++;
      star_t = t;
    } else if (p < pattern.size() && pattern[p] == '_') {
      ++p;
      t += std::min(utf8_length(static_cast<unsigned char>(text[t])),
                    text.size() - t);
    } else if (p < pattern.size() && pattern[p] == text[t]) {
      ++p;
      ++t;
    } else if (star_p != std::string_view::npos) {
      p = star_p + 1;
      star_t += utf8_length(static_cast<unsigned char>(text[star_t]));
      t = std::min(star_t, text.size());
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '%')
    ++p;
  return p == pattern.size();
}

json evaluate(const expr& e, const row_context& ctx) {
  switch (e.what) {
    case expr::kind::literal:
      return e.value;
    case expr::kind::field:
      return walk(ctx.payload, e.path);
    case expr::kind::call:
      return call(e, ctx);
    case expr::kind::unary: {
      auto v = evaluate(*e.operands[0], ctx);
      if (e.oper == op::not_)
        return logical_not(v);
      if (v.is_number_integer()
          && v.get<std::int64_t>() != std::numeric_limits<std::int64_t>::min())
        return -v.get<std::int64_t>();
      if (v.is_number())
        return -v.get<double>();
      return nullptr;
    }
    case expr::kind::binary:
      return binary(e, ctx);
    case expr::kind::in_list: {
      auto needle = evaluate(*e.operands[0], ctx);
      if (needle.is_null())
        return nullptr;
      bool saw_null = false;
      for (std::size_t i = 1; i < e.operands.size(); ++i) {
        auto eq = equals(needle, evaluate(*e.operands[i], ctx));
        if (eq == true)
          return negate_if(e.negated, true);
        saw_null = saw_null || eq.is_null();
      }
      return saw_null ? json() : negate_if(e.negated, false);
    }
    case expr::kind::like: {
      auto text = evaluate(*e.operands[0], ctx);
      auto pattern = evaluate(*e.operands[1], ctx);
      if (!text.is_string() || !pattern.is_string())
        return nullptr;
      return negate_if(e.negated,
                       like_match(text.get_ref<const std::string&>(),
                                  pattern.get_ref<const std::string&>()));
    }
    case expr::kind::is_null:
      return evaluate(*e.operands[0], ctx).is_null() != e.negated;
  }
  return nullptr;
}

std::optional<json> select(const statement& stmt, const message& msg) {
  if (stmt.from && !topic_matches(*stmt.from, msg.topic))
    return std::nullopt;
  json parsed;
  const json* payload = nullptr;
  if (stmt.reads_payload) {
    // Bounded: the row is printed as the output, and dump() recurses; a
    // payload nested deeper is not read as JSON.
    parsed = parse_json_bounded<json>(msg.body.view());
    if (parsed.is_object())
      payload = &parsed;
  }
  row_context ctx{msg, payload};
  if (stmt.where && evaluate(*stmt.where, ctx) != true)
    return std::nullopt;
  json row = json::object();
  for (auto& col : stmt.columns) {
    if (!col.star) {
      row[col.name] = evaluate(*col.value, ctx);
      continue;
    }
    if (!payload)
      continue;
    // Named columns win over payload fields of the same name, wherever the
    // `*` stands: `SELECT qos() AS qos, *` keeps the message's qos.
    for (auto& [key, value] : payload->items()) {
      bool named = false;
      for (auto& other : stmt.columns)
        named = named || (!other.star && other.name == key);
      if (!named)
        row[key] = value;
    }
  }
  if (row.empty())
    return std::nullopt;
  return row;
}

} // namespace hubflow::sql
