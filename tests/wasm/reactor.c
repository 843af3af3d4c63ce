/* Built as a WASI reactor (no _start): hubflow must refuse it at config load. */
int answer(void) {
  return 42;
}
