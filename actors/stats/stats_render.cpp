#include "stats/stats_render.hpp"

#include <sstream>

#include <nlohmann/json.hpp>

#include "core/json_text.hpp"

namespace hubflow {

namespace {

// Sorted keys (nlohmann::json, not ordered_json): the order the snapshot
// has always been printed in.
using json = nlohmann::json;

json component_doc(const component_stats& c) {
  json counters = json::object();
  for (auto& [k, v] : c.counters)
    counters[k] = v;
  json labels = json::object();
  for (auto& [k, v] : c.labels)
    labels[k] = v;
  return {{"kind", c.kind},
          {"name", c.name},
          {"counters", counters},
          {"labels", labels}};
}

} // namespace

std::map<std::string, std::int64_t> counters_by_name(const component_stats& c) {
  std::map<std::string, std::int64_t> out;
  for (auto& [k, v] : c.counters)
    out[k] = v;
  return out;
}

std::map<std::string, std::string> labels_by_name(const component_stats& c) {
  std::map<std::string, std::string> out;
  for (auto& [k, v] : c.labels)
    out[k] = v;
  return out;
}

std::string component_to_json(const component_stats& c) {
  return dump_json(component_doc(c));
}

std::string stats_to_json(const stats_snapshot& s) {
  json doc;
  doc["version"] = s.version;
  doc["uptime_ms"] = s.uptime_ms;
  doc["components"] = json::array();
  for (auto& c : s.components)
    doc["components"].push_back(component_doc(c));
  return dump_json(doc);
}

bool stats_from_json(std::string_view text, stats_snapshot& out,
                     std::string& error) {
  auto fail = [&](const std::string& why) {
    error = "not a stats snapshot: " + why;
    return false;
  };
  std::string parse_error;
  auto doc = parse_json_bounded<json>(text, default_json_depth, &parse_error);
  if (doc.is_discarded())
    return fail(parse_error);
  if (!doc.is_object())
    return fail("not a JSON object");
  stats_snapshot s;
  if (auto v = doc.find("version"); v != doc.end() && v->is_string())
    s.version = v->get<std::string>();
  if (auto v = doc.find("uptime_ms"); v != doc.end() && v->is_number_integer())
    s.uptime_ms = v->get<std::int64_t>();
  auto comps = doc.find("components");
  if (comps == doc.end() || !comps->is_array())
    return fail("no \"components\" array");
  for (auto& c : *comps) {
    if (!c.is_object() || !c.contains("kind") || !c["kind"].is_string()
        || !c.contains("name") || !c["name"].is_string())
      return fail("a component without a string kind and name");
    component_stats cs;
    cs.kind = c["kind"].get<std::string>();
    cs.name = c["name"].get<std::string>();
    if (auto cc = c.find("counters"); cc != c.end() && cc->is_object())
      for (auto& [k, v] : cc->items())
        if (v.is_number_integer())
          cs.counters.emplace_back(k, v.get<std::int64_t>());
    if (auto ls = c.find("labels"); ls != c.end() && ls->is_object())
      for (auto& [k, v] : ls->items())
        cs.labels.emplace_back(k, v.is_string() ? v.get<std::string>()
                                                : dump_json(v));
    s.components.push_back(std::move(cs));
  }
  out = std::move(s);
  return true;
}

std::string render_stats_table(const stats_snapshot& s) {
  std::ostringstream out;
  out << "hubflow " << (s.version.empty() ? "?" : s.version) << ", up "
      << s.uptime_ms / 1000 << " s\n";
  std::string kind;
  for (auto& c : s.components) {
    if (c.kind != kind) {
      kind = c.kind;
      out << "\n" << kind << "\n";
    }
    out << "  " << c.name << "\n";
    std::string line = "   ";
    auto emit = [&](const std::string& item) {
      if (line.size() + item.size() > 78) {
        out << line << "\n";
        line = "   ";
      }
      line += item;
    };
    for (auto& [k, v] : counters_by_name(c))
      emit(" " + k + "=" + std::to_string(v));
    for (auto& [k, v] : labels_by_name(c))
      emit(" " + k + "=" + v);
    if (line.size() > 3)
      out << line << "\n";
  }
  return out.str();
}

} // namespace hubflow
