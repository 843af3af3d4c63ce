/* no_entry: a shared object without hubflow_plugin_entry; the loader must
 * refuse it and name this file. */
int not_a_hubflow_plugin(void) {
  return 42;
}
