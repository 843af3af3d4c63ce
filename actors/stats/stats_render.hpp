// The stats snapshot (core/component_stats.hpp) as text: the JSON of the
// stats port, `hubflowctl stats --json` and `$SYS/hubflow/...`, and the
// table `hubflowctl stats` prints. The stats actor answers typed values;
// only these functions (and http/'s Prometheus and metadata renderers) turn
// them into text, and hubflowctl reads the JSON back with stats_from_json.
//
// JSON shape (documented in docs/hubflowctl.md), keys in sorted order:
//   {"components": [{"counters": {"in": 3, ...}, "kind": "rule",
//                    "labels": {...}, "name": "r1"}, ...],
//    "uptime_ms": 1234, "version": "0.1.0"}
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "core/component_stats.hpp"

namespace hubflow {

/// A component's counters by name, each name once (a later entry of the
/// same name wins, as in the JSON object): every rendering lists them in
/// this order.
std::map<std::string, std::int64_t> counters_by_name(const component_stats& c);

/// A component's labels by name, as counters_by_name.
std::map<std::string, std::string> labels_by_name(const component_stats& c);

/// One component as JSON text ({"counters", "kind", "labels", "name"}), as
/// published on `$SYS/hubflow/<kind>/<name>`. Text that is not UTF-8 (names
/// come from clients) becomes U+FFFD; never throws for it.
std::string component_to_json(const component_stats& c);

/// The whole snapshot as one line of JSON text (the shape above).
std::string stats_to_json(const stats_snapshot& s);

/// Reads JSON text in the shape above (what the stats port sends) into
/// `out`. Counters that are not integers are left out; labels that are not
/// strings keep their JSON text. False, with `error` set, when the text is
/// not such a snapshot.
bool stats_from_json(std::string_view text, stats_snapshot& out,
                     std::string& error);

/// The snapshot as the table `hubflowctl stats` prints, one block per kind.
std::string render_stats_table(const stats_snapshot& s);

} // namespace hubflow
