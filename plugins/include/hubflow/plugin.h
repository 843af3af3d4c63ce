/*
 * hubflow native function plugin ABI, version 1.
 *
 * A plugin is a shared object (.so) that exports one C symbol,
 * `hubflow_plugin_entry`. The broker calls it with the highest ABI version it
 * supports; the plugin returns a descriptor for a version it implements (at
 * most the offered one), or NULL to refuse. The broker refuses a descriptor
 * whose `abi_version` it does not know, naming the file.
 *
 * Threading: the broker creates one plugin instance per function instance and
 * never calls into one instance from two threads at once, so instance state
 * needs no locking. Different instances may run concurrently; global state in
 * a plugin must be thread-safe.
 *
 * Ownership: every pointer the broker passes in (payload, context strings,
 * config strings) is owned by the broker and valid only for the duration of
 * the call. A plugin hands results back through the `hubflow_output`
 * callbacks, which copy the bytes: the plugin keeps ownership of what it
 * passes to them, and no memory is ever freed across the boundary.
 *
 * Growth: every struct starts with `struct_size` (set by whoever fills it);
 * new fields are only ever appended, so a plugin built against an older
 * header keeps working. Read a field only when `struct_size` covers it.
 *
 * This header is C so plugins can be written in C, C++, Rust or Zig.
 */
#ifndef HUBFLOW_PLUGIN_H
#define HUBFLOW_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The ABI version this header describes. */
#define HUBFLOW_PLUGIN_ABI_VERSION 1u

/** The name of the symbol every plugin exports. */
#define HUBFLOW_PLUGIN_ENTRY_SYMBOL "hubflow_plugin_entry"

/** What the payload is. */
typedef enum hubflow_event_kind {
  HUBFLOW_EVENT_JSON = 1,  /**< the payload is a JSON object (UTF-8 text) */
  HUBFLOW_EVENT_BYTES = 2, /**< anything else: raw bytes */
} hubflow_event_kind;

/** What an invocation returns. */
typedef enum hubflow_status {
  HUBFLOW_OK = 0,    /**< output (if any) was written with `output->write` */
  HUBFLOW_ERROR = 1, /**< the handler failed; details via `output->error` */
} hubflow_status;

/** A string that is not NUL-terminated: pointer plus length. */
typedef struct hubflow_string {
  const char* data;
  size_t size;
} hubflow_string;

/** Baetyl's invocation context. Owned by the broker, valid during the call. */
typedef struct hubflow_context {
  uint32_t struct_size;
  int32_t message_qos;               /**< messageQOS */
  hubflow_string message_topic;      /**< messageTopic */
  int64_t message_timestamp;         /**< messageTimestamp, ms since epoch */
  hubflow_string function_name;      /**< functionName */
  hubflow_string function_invoke_id; /**< functionInvokeID */
} hubflow_context;

/**
 * Where a plugin puts its result. The callbacks copy what they are given.
 * Calling `write` several times appends; never calling it means "publish
 * nothing". `error` sets the error message and type reported when `invoke`
 * returns HUBFLOW_ERROR (both NUL-terminated; type may be NULL).
 */
typedef struct hubflow_output {
  uint32_t struct_size;
  void* broker_data; /**< pass back unchanged to the callbacks */
  void (*write)(void* broker_data, const char* data, size_t size);
  void (*error)(void* broker_data, const char* message, const char* type);
} hubflow_output;

/** One `key=value` setting from the function's `env:` config. */
typedef struct hubflow_setting {
  const char* key;   /**< NUL-terminated, owned by the broker */
  const char* value; /**< NUL-terminated, owned by the broker */
} hubflow_setting;

/** What `create` gets. Owned by the broker, valid during the call only. */
typedef struct hubflow_plugin_config {
  uint32_t struct_size;
  const char* function_name; /**< NUL-terminated */
  const hubflow_setting* settings;
  size_t settings_count;
} hubflow_plugin_config;

/** The descriptor a plugin returns from its entry point. */
typedef struct hubflow_plugin {
  uint32_t abi_version; /**< HUBFLOW_PLUGIN_ABI_VERSION the plugin speaks */
  uint32_t struct_size; /**< sizeof(hubflow_plugin) as the plugin saw it */
  const char* name;        /**< NUL-terminated, static */
  const char* description; /**< NUL-terminated, static */

  /**
   * Creates an instance. Returns an opaque pointer (may be any non-NULL
   * value), or NULL after writing a NUL-terminated reason into `error`
   * (at most `error_size` bytes including the NUL).
   */
  void* (*create)(const hubflow_plugin_config* config, char* error,
                  size_t error_size);

  /** Handles one event. May block; the broker enforces the timeout. */
  hubflow_status (*invoke)(void* instance, const char* payload,
                           size_t payload_size, hubflow_event_kind kind,
                           const hubflow_context* context,
                           const hubflow_output* output);

  /** Destroys an instance created by `create`. */
  void (*destroy)(void* instance);

  void* reserved[8]; /**< zero; room to grow */
} hubflow_plugin;

/** The entry point's type. */
typedef const hubflow_plugin* (*hubflow_plugin_entry_fn)(
  uint32_t host_abi_version);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* HUBFLOW_PLUGIN_H */
