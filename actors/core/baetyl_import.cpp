#include "core/baetyl_import.hpp"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>

#include <yaml-cpp/yaml.h>

#include "core/config.hpp"
#include "core/values.hpp"

namespace hubflow {

namespace {

namespace fs = std::filesystem;

/// What a Baetyl image is here (by its name without registry and tag).
enum class image_kind { hub, function_manager, python, node, sql, other };

image_kind kind_of(const std::string& image) {
  auto name = image.substr(image.find_last_of('/') + 1);
  name = name.substr(0, name.find(':'));
  if (name == "baetyl-hub")
    return image_kind::hub;
  if (name == "baetyl-function-manager")
    return image_kind::function_manager;
  if (name == "baetyl-function-python27" || name == "baetyl-function-python36")
    return image_kind::python;
  if (name == "baetyl-function-node85")
    return image_kind::node;
  if (name == "baetyl-function-sql")
    return image_kind::sql;
  return image_kind::other;
}

const char* runtime_of(image_kind kind) {
  switch (kind) {
    case image_kind::python:
      return "python";
    case image_kind::node:
      return "node";
    case image_kind::sql:
      return "sql";
    default:
      return nullptr;
  }
}

/// A container path without leading and trailing slashes ("etc/baetyl").
std::string container_path(std::string p) {
  while (!p.empty() && p.front() == '/')
    p.erase(0, 1);
  while (!p.empty() && p.back() == '/')
    p.pop_back();
  return p;
}

struct mount {
  std::string volume;
  std::string path; // inside the container, as container_path() writes it
};

struct service {
  std::string name;
  std::string image;
  image_kind kind = image_kind::other;
  std::vector<mount> mounts;
  YAML::Node node;
  std::string key; // services[i]
};

/// A service.yml as read: its file and its root node.
struct service_file {
  std::string file;
  YAML::Node root;
};

/// Keys of Baetyl's hub service.yml that mean the same in `hub:`.
constexpr const char* hub_keys_copied[] = {"listen", "principals",
                                           "subscriptions"};

class importer {
public:
  explicit importer(const std::string& dir) {
    locate(dir);
  }

  baetyl_import run() {
    if (errors_.empty())
      read_application();
    if (errors_.empty())
      translate();
    if (!errors_.empty())
      throw config_error(errors_);
    return std::move(out_);
  }

private:
  // -- reporting -----------------------------------------------------------

  void fail(const YAML::Node& at, const std::string& file,
            const std::string& key, const std::string& message) {
    errors_.push_back(
      format_config_error(position_of(at, file), key, message));
  }
  void warn(const YAML::Node& at, const std::string& file,
            const std::string& key, const std::string& message) {
    out_.warnings.push_back(
      format_config_error(position_of(at, file), key, message));
  }

  // -- files ---------------------------------------------------------------

  /// Finds application.yml: <dir>/var/db/baetyl/application.yml (dir is
  /// Baetyl's working directory) or <dir>/application.yml with dir ending
  /// in var/db/baetyl.
  void locate(const std::string& dir) {
    auto root = fs::absolute(dir).lexically_normal();
    if (root.filename().empty())
      root = root.parent_path();
    auto in_workdir = root / "var/db/baetyl/application.yml";
    std::error_code ec;
    if (fs::exists(in_workdir, ec)) {
      workdir_ = root;
      out_.application = in_workdir.string();
      return;
    }
    auto beside = root / "application.yml";
    auto is_app_dir = root.filename() == "baetyl"
                      && root.parent_path().filename() == "db"
                      && root.parent_path().parent_path().filename() == "var";
    if (fs::exists(beside, ec) && is_app_dir) {
      workdir_ = root.parent_path().parent_path().parent_path();
      out_.application = beside.string();
      return;
    }
    errors_.push_back(
      dir + ": not a Baetyl deployment: no var/db/baetyl/application.yml in "
            "it" + (fs::exists(beside, ec)
                      ? " (an application.yml beside it, but volume paths "
                        "are relative to Baetyl's working directory: give "
                        "that, the directory holding var/db/baetyl)"
                      : ""));
  }

  std::optional<YAML::Node> load(const std::string& file) {
    try {
      return YAML::LoadFile(file);
    } catch (const YAML::BadFile&) {
      errors_.push_back(file + ": cannot read the file");
    } catch (const YAML::Exception& e) {
      errors_.push_back(format_config_error(
        {file, e.mark.line + 1, e.mark.column + 1}, "", e.msg));
    }
    return std::nullopt;
  }

  /// Where `path`, inside `svc`'s container, is on the host: through the
  /// mount whose path is the longest prefix of it.
  std::optional<fs::path> host_path(const service& svc,
                                    const std::string& path) const {
    auto p = container_path(path);
    const mount* best = nullptr;
    for (auto& m : svc.mounts)
      if ((p == m.path || p.rfind(m.path + "/", 0) == 0)
          && (!best || m.path.size() > best->path.size()))
        best = &m;
    if (!best)
      return std::nullopt;
    auto volume = volumes_.find(best->volume);
    if (volume == volumes_.end())
      return std::nullopt;
    auto rest = p.substr(best->path.size());
    while (!rest.empty() && rest.front() == '/')
      rest.erase(0, 1);
    return rest.empty() ? volume->second : volume->second / rest;
  }

  /// The host path of `node`, a path inside `svc`'s container that the
  /// service.yml `file` names at `key`; empty (and an error) when it is on
  /// no volume.
  std::string host_file(const service& svc, const YAML::Node& node,
                        const std::string& file, const std::string& key) {
    auto inside = node.as<std::string>();
    if (auto host = host_path(svc, inside))
      return host->string();
    fail(node, file, key,
         "'" + inside + "' is on no volume of service '" + svc.name + "'");
    return {};
  }

  /// `block` with its `ca`, `cert` and `key` (Baetyl's certificate keys)
  /// as host paths; `prefix` names the block in errors ("certificate.").
  YAML::Node with_host_files(const service& svc, const YAML::Node& block,
                             const std::string& file,
                             const std::string& prefix) {
    auto out = YAML::Clone(block);
    for (auto key : {"ca", "cert", "key"})
      if (block[key])
        out[key] = host_file(svc, block[key], file, prefix + key);
    return out;
  }

  /// A warning for every key of `map` that is not in `known`.
  void warn_unmapped(const YAML::Node& map, const std::string& file,
                     const std::string& prefix,
                     std::initializer_list<std::string_view> known,
                     const std::string& why = "not mapped; left out") {
    for (auto kv : map) {
      auto name = kv.first.as<std::string>();
      if (std::find(known.begin(), known.end(), name) == known.end())
        warn(kv.first, file, prefix + name, why);
    }
  }

  /// The service.yml a service reads (etc/baetyl/service.yml inside it).
  std::optional<service_file> service_yml(const service& svc) {
    auto dir = host_path(svc, "etc/baetyl");
    if (!dir) {
      fail(svc.node, out_.application, svc.key + ".mounts",
           "service '" + svc.name + "' mounts no volume at etc/baetyl, "
           "where it reads its service.yml");
      return std::nullopt;
    }
    auto file = (*dir / "service.yml").string();
    auto root = load(file);
    if (!root)
      return std::nullopt;
    return service_file{file, *root};
  }

  // -- application.yml -----------------------------------------------------

  void read_application() {
    auto app = load(out_.application);
    if (!app)
      return;
    auto& file = out_.application;
    auto volumes = (*app)["volumes"];
    for (std::size_t i = 0; i < volumes.size(); ++i) {
      auto v = volumes[i];
      auto name = v["name"].as<std::string>("");
      auto path = v["path"].as<std::string>("");
      if (name.empty() || path.empty()) {
        fail(v, file, index_path("volumes", i), "a volume needs name and path");
        continue;
      }
      fs::path p{path};
      volumes_[name] = (p.is_absolute() ? p : workdir_ / p).lexically_normal();
    }
    auto services = (*app)["services"];
    if (!services.IsSequence() || services.size() == 0)
      fail(*app, file, "services", "no services: nothing to run");
    for (std::size_t i = 0; i < services.size(); ++i)
      read_service(services[i], index_path("services", i));
  }

  void read_service(const YAML::Node& s, const std::string& key) {
    auto& file = out_.application;
    service svc;
    svc.node = s;
    svc.key = key;
    svc.name = s["name"].as<std::string>("");
    svc.image = s["image"].as<std::string>("");
    if (svc.name.empty() || svc.image.empty()) {
      fail(s, file, key, "a service needs name and image");
      return;
    }
    svc.kind = kind_of(svc.image);
    auto mounts = s["mounts"];
    for (std::size_t i = 0; mounts && i < mounts.size(); ++i) {
      auto m = mounts[i];
      auto at = index_path(key + ".mounts", i);
      mount one{m["name"].as<std::string>(""),
                container_path(m["path"].as<std::string>(""))};
      if (!volumes_.count(one.volume)) {
        fail(m, file, at + ".name",
             "no volume '" + one.volume + "' in volumes");
        continue;
      }
      if (one.path.rfind("var/log", 0) == 0)
        warn(m, file, at,
             "log volume: hubflow logs to standard error (logger.path in a "
             "hubflow config writes a file)");
      svc.mounts.push_back(std::move(one));
    }
    if (s["ports"])
      warn(s["ports"], file, key + ".ports",
           "no meaning here: hubflow binds the hub's listen addresses on "
           "the host itself");
    auto replica = s["replica"].as<int>(1);
    bool runtime = runtime_of(svc.kind) != nullptr;
    if (s["replica"] && !runtime && replica != 1)
      warn(s["replica"], file, key + ".replica",
           "no meaning here: hubflow runs one " + svc.name);
    warn_unmapped(s, file, key + ".",
                  {"name", "image", "mounts", "ports", "replica"},
                  "no meaning here; left out");
    if (svc.kind == image_kind::other)
      warn(s, file, key,
           "service '" + svc.name + "' (" + svc.image
             + "): hubflow has no counterpart of this image; not run");
    services_.push_back(std::move(svc));
  }

  const service* find_service(const std::string& name) const {
    for (auto& s : services_)
      if (s.name == name)
        return &s;
    return nullptr;
  }
  const service* first_of(image_kind kind) const {
    for (auto& s : services_)
      if (s.kind == kind)
        return &s;
    return nullptr;
  }

  // -- translation ---------------------------------------------------------

  void translate() {
    auto hub = first_of(image_kind::hub);
    auto manager = first_of(image_kind::function_manager);
    for (auto& s : services_)
      if ((s.kind == image_kind::hub && &s != hub)
          || (s.kind == image_kind::function_manager && &s != manager))
        fail(s.node, out_.application, s.key,
             "a second " + s.image + " service ('" + s.name
               + "'): hubflow runs one hub and one set of rules");
    if (!hub && !manager)
      fail(YAML::Node{}, out_.application, "services",
           "neither baetyl-hub nor baetyl-function-manager: nothing hubflow "
           "runs");
    if (hub)
      translate_hub(*hub);
    if (manager)
      translate_manager(*manager, hub);
  }

  /// Appends one top-level section of the hubflow config, commented with
  /// where it comes from.
  void emit(const std::string& origin, const std::string& key,
            const YAML::Node& value) {
    YAML::Node section;
    section[key] = value;
    YAML::Emitter e;
    e << section;
    out_.yaml += "# from " + origin + "\n" + e.c_str() + "\n";
  }

  void translate_hub(const service& svc) {
    auto conf = service_yml(svc);
    if (!conf)
      return;
    auto& file = conf->file;
    YAML::Node hub;
    for (auto key : hub_keys_copied)
      if (conf->root[key])
        hub[key] = conf->root[key];
    if (auto cert = conf->root["certificate"])
      hub["certificate"] = with_host_files(svc, cert, file, "certificate.");
    if (auto message = conf->root["message"]) {
      for (auto kv : message) {
        auto name = kv.first.as<std::string>();
        if (name == "length")
          hub["message"]["length"] = kv.second;
        else
          warn(kv.first, file, "message." + name,
               "not mapped: hubflow bounds queues with hub.message.queued "
               "and hub.message.inflight");
      }
    }
    logger_level(conf->root, file);
    warn_unmapped(conf->root, file, "",
                  {"listen", "principals", "subscriptions", "certificate",
                   "message", "logger", "storage"});
    emit(file, "hub", hub);
    out_.mapping.push_back("service " + svc.name + " (" + svc.image
                           + ") -> the embedded hub");
    // Baetyl's hub keeps QoS 1 messages in storage.dir; on a volume, that
    // survives the container, which is what hubflow's persistence does.
    auto dir = conf->root["storage"]["dir"].as<std::string>("var/db/baetyl/data");
    if (auto host = host_path(svc, dir)) {
      YAML::Node persistence;
      persistence["path"] = host->string();
      emit(file + " (storage.dir " + dir + ")", "persistence", persistence);
      out_.mapping.push_back("  its storage.dir " + dir + " -> persistence.path "
                             + host->string());
    } else {
      out_.warnings.push_back(
        file + ": storage.dir " + dir
        + " is on no volume (Baetyl loses it with the container): the hub "
          "keeps its sessions in memory");
    }
  }

  /// logger.level of a service.yml, the first one given wins (hubflow has
  /// one log); logger.path is a file in a log volume.
  void logger_level(const YAML::Node& root, const std::string& file) {
    auto logger = root["logger"];
    if (!logger)
      return;
    if (logger["level"]) {
      if (logger_level_.empty()) {
        logger_level_ = logger["level"].as<std::string>();
        YAML::Node section;
        section["level"] = logger_level_;
        emit(file + " (logger.level)", "logger", section);
      } else if (logger["level"].as<std::string>() != logger_level_) {
        warn(logger["level"], file, "logger.level",
             "hubflow has one log: it uses level '" + logger_level_ + "'");
      }
    }
    if (logger["path"])
      warn(logger["path"], file, "logger.path",
           "hubflow logs to standard error (logger.path in a hubflow config "
           "writes a file)");
  }

  void translate_manager(const service& svc, const service* hub) {
    auto conf = service_yml(svc);
    if (!conf)
      return;
    auto& file = conf->file;
    auto& root = conf->root;
    out_.mapping.push_back("service " + svc.name + " (" + svc.image + ") -> "
                           + std::to_string(root["rules"].size())
                           + " rules and "
                           + std::to_string(root["functions"].size())
                           + " functions");
    translate_manager_hub(svc, hub, *conf);
    if (root["rules"])
      emit(file, "rules", root["rules"]);
    YAML::Node functions{YAML::NodeType::Sequence};
    auto entries = root["functions"];
    for (std::size_t i = 0; i < entries.size(); ++i)
      if (auto f = translate_function(entries[i], index_path("functions", i),
                                      file))
        functions.push_back(*f);
    if (functions.size() > 0)
      emit(file + " and the functions' own service.yml", "functions",
           functions);
    logger_level(root, file);
    warn_unmapped(root, file, "", {"hub", "rules", "functions", "logger"});
  }

  /// The function manager's `hub`: the embedded hub when its address names
  /// the hub service, else an external hub.
  void translate_manager_hub(const service& svc, const service* hub,
                             const service_file& conf) {
    auto node = conf.root["hub"];
    auto address = node["address"].as<std::string>("");
    std::string bad;
    auto at = parse_host_port(address, hub_address_rules, bad);
    if (!at) {
      fail(node["address"] ? node["address"] : node, conf.file, "hub.address",
           address.empty() ? "the function manager needs hub.address" : bad);
      return;
    }
    if (hub && at->host == hub->name) {
      out_.mapping.push_back("  hub.address " + address + " names service "
                             + hub->name
                             + ": rules use the embedded hub in-process (no "
                               "login, no network)");
      return;
    }
    if (hub) {
      fail(node["address"], conf.file, "hub.address",
           "'" + address + "' names no service of this deployment, and "
           "hubflow runs one hub: the embedded one (service '" + hub->name
             + "'); point it at tcp://" + hub->name + ":<port>");
      return;
    }
    auto external = with_host_files(svc, node, conf.file, "hub.");
    emit(conf.file, "hub", external);
    out_.mapping.push_back("  hub.address " + address + " -> the external hub");
  }

  /// One function of the function manager, with what its runtime service's
  /// own service.yml says of it (handler, codedir).
  std::optional<YAML::Node> translate_function(const YAML::Node& entry,
                                               const std::string& key,
                                               const std::string& file) {
    auto name = entry["name"].as<std::string>("");
    auto service_name = entry["service"].as<std::string>("");
    if (name.empty() || service_name.empty()) {
      fail(entry, file, key, "a function needs name and service");
      return std::nullopt;
    }
    auto svc = find_service(service_name);
    if (!svc) {
      fail(entry["service"], file, key + ".service",
           "no service '" + service_name + "' in " + out_.application);
      return std::nullopt;
    }
    auto runtime = runtime_of(svc->kind);
    if (!runtime) {
      fail(entry["service"], file, key + ".service",
           "service '" + service_name + "' runs " + svc->image
             + ", not a function runtime hubflow has "
               "(baetyl-function-python27, -python36, -node85, -sql)");
      return std::nullopt;
    }
    auto conf = service_yml(*svc);
    if (!conf)
      return std::nullopt;
    YAML::Node own;
    auto list = conf->root["functions"];
    for (std::size_t i = 0; i < list.size(); ++i)
      if (list[i]["name"].as<std::string>("") == name)
        own = list[i];
    if (!own) {
      fail(list ? list : conf->root, conf->file, "functions",
           "no function '" + name + "' (" + file + " " + key + " names it)");
      return std::nullopt;
    }
    YAML::Node f;
    f["name"] = name;
    f["runtime"] = runtime;
    if (own["handler"])
      f["handler"] = own["handler"];
    if (own["codedir"])
      if (auto host = host_file(*svc, own["codedir"], conf->file, "codedir");
          !host.empty())
        f["codedir"] = host;
    warn_unmapped(own, conf->file, "", {"name", "handler", "codedir"});
    if (auto instance = entry["instance"]) {
      for (auto kv : instance) {
        auto k = kv.first.as<std::string>();
        if (k == "min" || k == "max" || k == "idletime" || k == "timeout")
          f["instance"][k] = kv.second;
        else
          warn(kv.first, file, key + ".instance." + k,
               "not mapped: hubflow bounds instances with instance.memory "
               "(wasm) and message_size");
      }
    }
    std::string line = "function " + name + ": service " + svc->name + " ("
                       + svc->image + ") -> runtime " + runtime;
    if (svc->kind == image_kind::python) {
      line += " (Python 3: hubflow runs no Python 2)";
      check_python3(*svc, f, name);
    }
    out_.mapping.push_back(line);
    return f;
  }

  /// Python 2 code does not run on Python 3: say so now, naming the file,
  /// instead of at every invocation.
  void check_python3(const service& svc, const YAML::Node& f,
                     const std::string& name) {
    auto handler = f["handler"].as<std::string>("");
    auto dot = handler.rfind('.');
    if (!f["codedir"] || dot == std::string::npos)
      return;
    auto module = handler.substr(0, dot);
    std::replace(module.begin(), module.end(), '.', '/');
    auto path = fs::path{f["codedir"].as<std::string>()} / (module + ".py");
    std::error_code ec;
    if (!fs::exists(path, ec))
      return; // the runtime reports a missing module with its own words
    auto quoted = "'" + shell_single_quoted(path.string()) + "'";
    auto cmd = "python3 -c \"import ast,sys; ast.parse(open(sys.argv[1],'rb')"
               ".read(), sys.argv[1])\" " + quoted + " 2>&1";
    std::string output;
    if (auto* p = ::popen(cmd.c_str(), "r")) {
      char buf[512];
      while (auto n = std::fread(buf, 1, sizeof buf, p))
        output.append(buf, n);
      if (::pclose(p) == 0)
        return;
    } else {
      return;
    }
    auto last = output.find_last_not_of('\n');
    output = output.substr(0, last + 1);
    output = output.substr(output.find_last_of('\n') + 1);
    out_.warnings.push_back(path.string() + ": does not parse as Python 3 ("
                            + output + "): function " + name + " of service "
                            + svc.name
                            + " will fail at every invocation; hubflow runs "
                              "Python 3 only");
  }

  static std::string shell_single_quoted(const std::string& s) {
    std::string out;
    for (char c : s)
      out += c == '\'' ? std::string{"'\\''"} : std::string(1, c);
    return out;
  }

  std::vector<std::string> errors_;
  baetyl_import out_;
  fs::path workdir_;
  std::map<std::string, fs::path> volumes_;
  std::vector<service> services_;
  std::string logger_level_;
};

} // namespace

baetyl_import import_baetyl(const std::string& dir) {
  try {
    return importer{dir}.run();
  } catch (const YAML::Exception& e) {
    // A value of a type Baetyl's files never have there (a list as a key,
    // say); yaml-cpp's message has the line, not the file.
    throw config_error({dir, 0, 0}, "",
                       std::string{"a value of an unexpected type in one of "
                                   "its files ("}
                         + e.what() + ")");
  }
}

} // namespace hubflow
