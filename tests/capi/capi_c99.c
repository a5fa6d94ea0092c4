/* The C ABI exercised from C99 (compiled with -std=c99 -pedantic -Werror). Prints the plain
 * "N passed, N failed" line at the end. usage: capi_c99 GOLDEN_DIR CORRUPT_DIR */
#include <dsv4.h>
#include <stdio.h>
#include <string.h>

static int g_passed = 0, g_failed = 0;
#define EXPECT(cond)                                                       \
  do {                                                                     \
    if (cond) {                                                            \
      ++g_passed;                                                          \
    } else {                                                               \
      ++g_failed;                                                          \
      fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__, #cond);  \
    }                                                                      \
  } while (0)

static void path_join(char* out, size_t cap, const char* a, const char* b) { snprintf(out, cap, "%s/%s", a, b); }

static void test_version(void) {
  char expected[32];
  snprintf(expected, sizeof expected, "%d.%d.%d", DSV4_VERSION_MAJOR, DSV4_VERSION_MINOR, DSV4_VERSION_PATCH);
  EXPECT(strcmp(dsv4_version(), expected) == 0);
  EXPECT(dsv4_version_number() == DSV4_VERSION_NUMBER);
  EXPECT(strcmp(dsv4_status_name(DSV4_OK), "DSV4_OK") == 0);
  EXPECT(strcmp(dsv4_status_name(DSV4_ERR_MODEL_MISMATCH), "DSV4_ERR_MODEL_MISMATCH") == 0);
  EXPECT(strcmp(dsv4_status_name((dsv4_status)999), "DSV4_ERR_UNKNOWN") == 0);
}

static void test_null_arguments(const char* golden) {
  dsv4_model* model = (dsv4_model*)1;
  int64_t value = 7;
  int32_t available = 5;
  EXPECT(dsv4_model_load(NULL, NULL, &model) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(model == NULL);
  EXPECT(strstr(dsv4_last_error(), "dir is NULL") != NULL);
  EXPECT(dsv4_model_load(golden, NULL, NULL) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_model_n_vocab(NULL, &value) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(value == 0);
  EXPECT(dsv4_model_n_layers(NULL, NULL) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_backend_available(NULL, &available) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_backend_available("cpu", NULL) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_backend_available("cpu", &available) == DSV4_OK && available == 1);
  EXPECT(strcmp(dsv4_last_error(), "") == 0); /* cleared by the successful call */
  dsv4_model_free(NULL);
}

static void test_load_and_query(const char* golden_dir) {
  char dir[1024];
  dsv4_model* model = NULL;
  int64_t value = 0, layer;
  const int64_t expected_ratios[6] = {0, 4, 128, 4, 128, 0};
  dsv4_model_params params = dsv4_model_default_params();
  path_join(dir, sizeof dir, golden_dir, "tiny-a");
  EXPECT(params.struct_size == sizeof(dsv4_model_params));
  params.backend = "cpu";
  EXPECT(dsv4_model_load(dir, &params, &model) == DSV4_OK);
  if (!model) return;
  EXPECT(dsv4_model_n_vocab(model, &value) == DSV4_OK && value == 256);
  EXPECT(dsv4_model_n_layers(model, &value) == DSV4_OK && value == 6);
  EXPECT(dsv4_model_n_embd(model, &value) == DSV4_OK && value == 64);
  for (layer = 0; layer < 6; ++layer) {
    EXPECT(dsv4_model_layer_compress_ratio(model, layer, &value) == DSV4_OK && value == expected_ratios[layer]);
  }
  EXPECT(dsv4_model_layer_compress_ratio(model, 6, &value) == DSV4_ERR_OUT_OF_RANGE);
  EXPECT(strstr(dsv4_last_error(), "layer 6") != NULL);
  EXPECT(dsv4_model_layer_compress_ratio(model, -1, &value) == DSV4_ERR_OUT_OF_RANGE);
  dsv4_model_free(model);

  model = NULL;
  path_join(dir, sizeof dir, golden_dir, "tiny-a-q");
  EXPECT(dsv4_model_load(dir, NULL, &model) == DSV4_OK);
  dsv4_model_free(model);
}

static void test_params_versioning(const char* golden_dir) {
  char dir[1024];
  dsv4_model* model = NULL;
  struct {
    dsv4_model_params base;
    char future[16];
  } bigger;
  dsv4_model_params params = dsv4_model_default_params();
  path_join(dir, sizeof dir, golden_dir, "tiny-a");
  params.struct_size = 4; /* smaller than any released version */
  EXPECT(dsv4_model_load(dir, &params, &model) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(model == NULL);
  memset(&bigger, 0, sizeof bigger);
  bigger.base = dsv4_model_default_params();
  bigger.base.struct_size = sizeof bigger;
  EXPECT(dsv4_model_load(dir, &bigger.base, &model) == DSV4_OK); /* newer caller, zero tail */
  dsv4_model_free(model);
  model = NULL;
  bigger.future[3] = 1;
  EXPECT(dsv4_model_load(dir, &bigger.base, &model) == DSV4_ERR_UNSUPPORTED);
  params = dsv4_model_default_params();
  params.backend = "tpu";
  EXPECT(dsv4_model_load(dir, &params, &model) == DSV4_ERR_INVALID_ARGUMENT);
  params.backend = NULL;
  params.n_threads = -1;
  EXPECT(dsv4_model_load(dir, &params, &model) == DSV4_ERR_INVALID_ARGUMENT);
}

static void test_bad_files(const char* corrupt_dir) {
  char dir[1024];
  dsv4_model* model = NULL;
  EXPECT(dsv4_model_load("/nonexistent/model", NULL, &model) == DSV4_ERR_IO);
  EXPECT(strlen(dsv4_last_error()) > 0);
  path_join(dir, sizeof dir, corrupt_dir, "model_bad_config");
  EXPECT(dsv4_model_load(dir, NULL, &model) == DSV4_ERR_INVALID_CONFIG);
  EXPECT(strstr(dsv4_last_error(), "o_groups") != NULL);
  path_join(dir, sizeof dir, corrupt_dir, "model_truncated");
  EXPECT(dsv4_model_load(dir, NULL, &model) == DSV4_ERR_CORRUPT_FILE);
  EXPECT(strstr(dsv4_last_error(), "model.safetensors") != NULL);
  EXPECT(model == NULL);
}

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s GOLDEN_DIR CORRUPT_DIR\n", argv[0]);
    return 2;
  }
  test_version();
  test_null_arguments(argv[1]);
  test_load_and_query(argv[1]);
  test_params_versioning(argv[1]);
  test_bad_files(argv[2]);
  printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
