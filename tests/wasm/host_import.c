/* Imports a function from a module the host does not provide: hubflow must
 * refuse it at config load, naming env.host_clock. */
__attribute__((import_module("env"), import_name("host_clock"))) int host_clock(void);

int main(void) {
  return host_clock();
}
