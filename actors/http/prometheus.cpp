#include "http/prometheus.hpp"

#include <cctype>
#include <map>
#include <set>
#include <vector>

#include <nlohmann/json.hpp>

#include "stats/stats_render.hpp"

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

} // namespace

std::string prometheus_name(const std::string& text) {
  std::string out;
  for (unsigned char c : text)
    out += std::isalnum(c) || c == '_' ? static_cast<char>(c) : '_';
  if (out.empty() || std::isdigit(static_cast<unsigned char>(out[0])))
    out.insert(out.begin(), '_');
  return out;
}

std::string stats_to_prometheus(const stats_snapshot& snapshot) {
  // Samples grouped by metric family: the format wants each family's
  // samples together, after its TYPE line.
  std::map<std::string, std::vector<std::string>> counters;
  std::map<std::string, std::vector<std::string>> infos;
  for (auto& c : snapshot.components) {
    auto kind = prometheus_name(c.kind);
    auto name = escape_label_value(c.name);
    auto selector = "{name=\"" + name + "\"}";
    for (auto& [counter, value] : counters_by_name(c))
      counters["hubflow_" + kind + "_" + prometheus_name(counter)].push_back(
        selector + " " + std::to_string(value));
    auto labels = labels_by_name(c);
    if (labels.empty())
      continue;
    std::string text = "name=\"" + name + "\"";
    std::set<std::string> seen{"name"};
    for (auto& [key, value] : labels) {
      auto label = prometheus_name(key);
      if (!seen.insert(label).second)
        continue;
      text += "," + label + "=\"" + escape_label_value(value) + "\"";
    }
    infos["hubflow_" + kind + "_info"].push_back("{" + text + "} 1");
  }
  std::string out;
  out += "# HELP hubflow_uptime_seconds Seconds since hubflow started.\n"
         "# TYPE hubflow_uptime_seconds gauge\n"
         "hubflow_uptime_seconds "
         + nlohmann::json(static_cast<double>(snapshot.uptime_ms) / 1000.0)
             .dump()
         + "\n";
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
