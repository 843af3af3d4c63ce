#include "http/prometheus.hpp"

#include <cctype>
#include <map>
#include <set>
#include <stdexcept>
#include <vector>

#include <nlohmann/json.hpp>

namespace hubflow {

namespace {

std::string escape_label_value(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string number_text(const nlohmann::json& v) {
  if (v.is_number_integer())
    return std::to_string(v.get<std::int64_t>());
  if (v.is_number_unsigned())
    return std::to_string(v.get<std::uint64_t>());
  if (v.is_number_float())
    return nlohmann::json(v.get<double>()).dump();
  if (v.is_boolean())
    return v.get<bool>() ? "1" : "0";
  return {};
}

} // namespace

std::string prometheus_name(const std::string& text) {
  std::string out;
  for (unsigned char c : text)
    out += std::isalnum(c) || c == '_' ? static_cast<char>(c) : '_';
  if (out.empty() || std::isdigit(static_cast<unsigned char>(out[0])))
    out.insert(out.begin(), '_');
  return out;
}

std::string stats_to_prometheus(const std::string& stats_json) {
  auto doc = nlohmann::json::parse(stats_json, nullptr, false);
  if (doc.is_discarded() || !doc.is_object())
    throw std::invalid_argument("stats snapshot is not a JSON object");
  // Samples grouped by metric family: the format wants each family's
  // samples together, after its TYPE line.
  std::map<std::string, std::vector<std::string>> counters;
  std::map<std::string, std::vector<std::string>> infos;
  if (auto comps = doc.find("components");
      comps != doc.end() && comps->is_array()) {
    for (auto& c : *comps) {
      auto kind = prometheus_name(c.value("kind", "component"));
      auto name = escape_label_value(c.value("name", ""));
      auto selector = "{name=\"" + name + "\"}";
      if (auto cs = c.find("counters"); cs != c.end() && cs->is_object())
        for (auto& [counter, value] : cs->items()) {
          auto text = number_text(value);
          if (text.empty())
            continue;
          counters["hubflow_" + kind + "_" + prometheus_name(counter)]
            .push_back(selector + " " + text);
        }
      if (auto ls = c.find("labels");
          ls != c.end() && ls->is_object() && !ls->empty()) {
        std::string labels = "name=\"" + name + "\"";
        std::set<std::string> seen{"name"};
        for (auto& [key, value] : ls->items()) {
          auto label = prometheus_name(key);
          if (!seen.insert(label).second)
            continue;
          labels += "," + label + "=\""
                    + escape_label_value(value.is_string()
                                           ? value.get<std::string>()
                                           : value.dump())
                    + "\"";
        }
        infos["hubflow_" + kind + "_info"].push_back("{" + labels + "} 1");
      }
    }
  }
  std::string out;
  if (auto up = doc.find("uptime_ms"); up != doc.end() && up->is_number()) {
    out += "# HELP hubflow_uptime_seconds Seconds since hubflow started.\n"
           "# TYPE hubflow_uptime_seconds gauge\n"
           "hubflow_uptime_seconds "
           + nlohmann::json(up->get<double>() / 1000.0).dump() + "\n";
  }
  for (auto& [family, samples] : counters) {
    // hubflow's counters mix cumulative counts and current values, so they
    // are exposed untyped rather than claiming counter semantics.
    out += "# TYPE " + family + " untyped\n";
    for (auto& s : samples)
      out += family + s + "\n";
  }
  for (auto& [family, samples] : infos) {
    out += "# TYPE " + family + " gauge\n";
    for (auto& s : samples)
      out += family + s + "\n";
  }
  return out;
}

} // namespace hubflow
