// A Baetyl v1 deployment directory as a hubflow config: what
// `hubflow --baetyl DIR` runs and `hubflowctl import-baetyl DIR` prints.
//
// Baetyl runs each service of application.yml as a container whose files
// come from volumes: a service reads etc/baetyl/service.yml, and a path a
// service.yml names (a function's codedir, a certificate) is a path inside
// the container, found on the host through the service's mounts. The
// images map to hubflow's parts:
//   baetyl-hub                     the embedded hub (its service.yml is
//                                  hubflow's `hub:` form; its data volume
//                                  becomes `persistence.path`)
//   baetyl-function-manager        rules and functions; a `hub.address`
//                                  naming the hub service is the embedded
//                                  hub itself
//   baetyl-function-python27/36    runtime python (Python 3 only)
//   baetyl-function-node85         runtime node
//   baetyl-function-sql            runtime sql
// What has no meaning here (port mappings, replicas, log volumes, other
// images) is a warning; what cannot be mapped is a config_error naming the
// Baetyl file, line and key.
#pragma once

#include <string>
#include <vector>

namespace hubflow {

struct baetyl_import {
  /// The application.yml read.
  std::string application;
  /// The hubflow config (YAML, absolute paths), its sections commented
  /// with the Baetyl file they come from.
  std::string yaml;
  /// One line per service and function: what it became.
  std::vector<std::string> mapping;
  /// What was left out or changes meaning, with the Baetyl file and key.
  std::vector<std::string> warnings;
};

/// Reads the deployment in `dir`: Baetyl's working directory (holding
/// var/db/baetyl/application.yml, volume paths relative to it), or the
/// directory of application.yml itself when that is <workdir>/var/db/baetyl.
/// Throws config_error with every problem found.
baetyl_import import_baetyl(const std::string& dir);

} // namespace hubflow
