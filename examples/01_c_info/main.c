/* 01_c_info: load a checkpoint through the C ABI and print its layer pattern.
 * usage: example_c_info MODEL_DIR */
#include <dsv4.h>
#include <stdio.h>

int main(int argc, char** argv) {
  dsv4_model* model = NULL;
  int64_t n_layers = 0;
  int64_t layer;
  dsv4_status status;
  if (argc != 2) {
    fprintf(stderr, "usage: %s MODEL_DIR\n", argv[0]);
    return 2;
  }
  printf("dsv4 %s (header %d.%d.%d)\n", dsv4_version(), DSV4_VERSION_MAJOR, DSV4_VERSION_MINOR,
         DSV4_VERSION_PATCH);
  status = dsv4_model_load(argv[1], NULL, &model);
  if (status != DSV4_OK) {
    fprintf(stderr, "load failed: %s: %s\n", dsv4_status_name(status), dsv4_last_error());
    return 1;
  }
  if (dsv4_model_n_layers(model, &n_layers) != DSV4_OK) return 1;
  for (layer = 0; layer < n_layers; ++layer) {
    int64_t ratio = 0;
    if (dsv4_model_layer_compress_ratio(model, layer, &ratio) != DSV4_OK) return 1;
    printf("layer %lld: %s\n", (long long)layer, ratio == 0 ? "SWA" : ratio == 4 ? "CSA" : "HCA");
  }
  dsv4_model_free(model);
  return 0;
}
