// A mosquitto.conf as a hubflow config: what `hubflowctl import-mosquitto
// FILE` prints. Listeners with their TLS and WebSocket options, anonymous
// access, the password and acl files (read as they are by hubflow), the
// session, queue and message limits and persistence are translated; every
// other option gets a line saying why it is not (a comment in the YAML and
// an entry in `unmapped`).
#pragma once

#include <string>
#include <vector>

namespace hubflow {

struct mosquitto_import {
  /// The hubflow config (YAML): the `# not mapped` lines first, then `hub:`
  /// and `persistence:`. Paths are absolute, resolved against the
  /// directory of the mosquitto.conf.
  std::string yaml;
  /// `mosquitto.conf:LINE: option: why it is not mapped`.
  std::vector<std::string> unmapped;
};

/// Reads `path` (Mosquitto 2.0's syntax: `option value`, `#` comments,
/// `listener PORT [ADDRESS]` starting a listener's options). Throws
/// config_error naming the line when the file cannot be read or a value is
/// not what Mosquitto accepts.
mosquitto_import import_mosquitto_conf(const std::string& path);

} // namespace hubflow
