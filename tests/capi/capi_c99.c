/* The C ABI exercised from C99 (compiled with -std=c99 -pedantic -Werror). Prints the plain
 * "N passed, N failed" line at the end. usage: capi_c99 GOLDEN_DIR CORRUPT_DIR TOKENIZER_DIR */
#include <dsv4.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_passed = 0, g_failed = 0;
#define EXPECT(cond)                                                     \
  do {                                                                   \
    if (cond) {                                                          \
      ++g_passed;                                                        \
    } else {                                                             \
      ++g_failed;                                                        \
      fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                    \
  } while (0)

static void path_join(char* out, size_t cap, const char* a, const char* b) {
  snprintf(out, cap, "%s/%s", a, b);
}

static void test_version(void) {
  char expected[32];
  snprintf(expected, sizeof expected, "%d.%d.%d", DSV4_VERSION_MAJOR, DSV4_VERSION_MINOR,
           DSV4_VERSION_PATCH);
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
    EXPECT(dsv4_model_layer_compress_ratio(model, layer, &value) == DSV4_OK &&
           value == expected_ratios[layer]);
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
  /* A struct_size far beyond any version is refused before the tail is read. */
  params = dsv4_model_default_params();
  params.struct_size = (size_t)1 << 40;
  EXPECT(dsv4_model_load(dir, &params, &model) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(strstr(dsv4_last_error(), "ceiling") != NULL);
  /* v2: a memory limit below the model's size. */
  params = dsv4_model_default_params();
  params.memory_limit = 4096;
  EXPECT(dsv4_model_load(dir, &params, &model) == DSV4_ERR_OUT_OF_MEMORY);
  EXPECT(model == NULL);
  EXPECT(strstr(dsv4_last_error(), "4096 bytes") != NULL);
}

/* v4 model params: the weights repacked (default) or as stored give the same logits; a v3
 * caller's padding is never read as a layout; an unknown layout is refused. */
static void test_weight_layouts(const char* golden_dir) {
  char dir[1024];
  dsv4_model *repacked = NULL, *stored = NULL, *v3 = NULL, *bad = NULL;
  dsv4_session *s_repacked = NULL, *s_stored = NULL;
  dsv4_model_params params = dsv4_model_default_params();
  const int32_t ids[6] = {5, 17, 42, 200, 3, 99};
  static float a[6 * 256], b[6 * 256];
  size_t i, repacked_bytes = 0, stored_bytes = 0;
  int finite = 1;
  path_join(dir, sizeof dir, golden_dir, "tiny-a-q");
  EXPECT(params.weights == DSV4_WEIGHTS_REPACKED);
  EXPECT(dsv4_model_load(dir, &params, &repacked) == DSV4_OK);
  params.weights = DSV4_WEIGHTS_STORED;
  EXPECT(dsv4_model_load(dir, &params, &stored) == DSV4_OK);
  params.weights = 9;
  EXPECT(dsv4_model_load(dir, &params, &bad) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(bad == NULL);
  EXPECT(strstr(dsv4_last_error(), "weights") != NULL);
  params = dsv4_model_default_params();
  params.struct_size = 40; /* a v3 caller whose padding holds garbage */
  params.reserved0 = 12345;
  params.weights = 77; /* past its struct: never read */
  EXPECT(dsv4_model_load(dir, &params, &v3) == DSV4_OK);
  EXPECT(dsv4_model_resident_bytes(repacked, &repacked_bytes) == DSV4_OK);
  EXPECT(dsv4_model_resident_bytes(stored, &stored_bytes) == DSV4_OK);
  EXPECT(repacked_bytes >= stored_bytes && repacked_bytes < stored_bytes + stored_bytes / 100);
  EXPECT(dsv4_session_create(repacked, NULL, &s_repacked) == DSV4_OK);
  EXPECT(dsv4_session_create(stored, NULL, &s_stored) == DSV4_OK);
  EXPECT(dsv4_session_append(s_repacked, ids, 6, a) == DSV4_OK);
  EXPECT(dsv4_session_append(s_stored, ids, 6, b) == DSV4_OK);
  for (i = 0; i < 6 * 256; ++i) finite = finite && isfinite(a[i]);
  EXPECT(finite);
  EXPECT(memcmp(a, b, sizeof a) == 0);
  dsv4_session_free(s_repacked);
  dsv4_session_free(s_stored);
  dsv4_model_free(repacked);
  dsv4_model_free(stored);
  dsv4_model_free(v3);
}

/* v3 model params: the official numerics (an official session stores the packed cache). */
static void test_official_numerics(const char* golden_dir) {
  char dir[1024];
  dsv4_model *exact = NULL, *official = NULL;
  dsv4_session *s_exact = NULL, *s_packed = NULL, *s_official = NULL;
  dsv4_model_params params = dsv4_model_default_params();
  dsv4_session_params sp = dsv4_session_default_params();
  int32_t numerics = -1;
  size_t exact_bytes = 0, packed_bytes = 0, official_bytes = 0;
  const int32_t ids[5] = {1, 17, 42, 200, 3};
  static float a[5 * 256], b[5 * 256]; /* logits of every appended token */
  size_t i;
  int finite = 1, differs = 0;
  path_join(dir, sizeof dir, golden_dir, "tiny-a-q");
  params.numerics = 7;
  EXPECT(dsv4_model_load(dir, &params, &official) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(strstr(dsv4_last_error(), "numerics") != NULL);
  params = dsv4_model_default_params();
  params.struct_size = 32; /* a v2 caller: numerics is not read, the exact mode */
  EXPECT(dsv4_model_load(dir, &params, &exact) == DSV4_OK);
  EXPECT(dsv4_model_numerics(exact, &numerics) == DSV4_OK && numerics == DSV4_NUMERICS_EXACT);
  params = dsv4_model_default_params();
  params.numerics = DSV4_NUMERICS_OFFICIAL;
  EXPECT(dsv4_model_load(dir, &params, &official) == DSV4_OK);
  EXPECT(dsv4_model_numerics(official, &numerics) == DSV4_OK && numerics == DSV4_NUMERICS_OFFICIAL);
  EXPECT(dsv4_model_numerics(NULL, &numerics) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_model_numerics(official, NULL) == DSV4_ERR_INVALID_ARGUMENT);
  sp.kv_format = DSV4_KV_BF16;
  EXPECT(dsv4_session_create(official, &sp, &s_official) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(s_official == NULL);
  EXPECT(dsv4_session_create(official, NULL, &s_official) == DSV4_OK);
  EXPECT(dsv4_session_create(exact, NULL, &s_exact) == DSV4_OK);
  sp.kv_format = DSV4_KV_PACKED;
  EXPECT(dsv4_session_create(exact, &sp, &s_packed) == DSV4_OK);
  EXPECT(dsv4_session_append(s_exact, ids, 5, a) == DSV4_OK);
  EXPECT(dsv4_session_append(s_packed, ids, 5, b) == DSV4_OK);
  EXPECT(dsv4_session_append(s_official, ids, 5, b) == DSV4_OK);
  for (i = 0; i < 5 * 256; ++i) {
    finite = finite && isfinite(a[i]) && isfinite(b[i]);
    differs = differs || a[i] != b[i];
  }
  EXPECT(finite && differs);
  /* The official session's cache is the packed one, byte for byte. */
  EXPECT(dsv4_session_cache_bytes(s_exact, -1, DSV4_CACHE_WINDOW, &exact_bytes) == DSV4_OK);
  EXPECT(dsv4_session_cache_bytes(s_packed, -1, DSV4_CACHE_WINDOW, &packed_bytes) == DSV4_OK);
  EXPECT(dsv4_session_cache_bytes(s_official, -1, DSV4_CACHE_WINDOW, &official_bytes) == DSV4_OK);
  EXPECT(official_bytes == packed_bytes && packed_bytes < exact_bytes);
  dsv4_session_free(s_exact);
  dsv4_session_free(s_packed);
  dsv4_session_free(s_official);
  dsv4_model_free(exact);
  dsv4_model_free(official);
}

/* Saved sessions: save, load and fork continue exactly; bad files give clear statuses. */
static void test_saved_sessions(const char* golden_dir) {
  char dir[1024], file[1100], bad[1200];
  dsv4_model* model = NULL;
  dsv4_session *s = NULL, *loaded = NULL, *forked = NULL;
  dsv4_save_params sp = dsv4_save_default_params();
  int32_t prompt[40], next[3] = {5, 6, 7};
  static float want[3 * 256], got[3 * 256], got_fork[3 * 256];
  int64_t position = 0;
  FILE* f;
  size_t i;
  for (i = 0; i < 40; ++i) prompt[i] = (int32_t)((i * 37 + 3) % 256);
  path_join(dir, sizeof dir, golden_dir, "tiny-a");
  snprintf(file, sizeof file, "%s/dsv4_c99_session_%d.bin", P_tmpdir,
           (int)sizeof(dsv4_save_params));
  snprintf(bad, sizeof bad, "%s.bad", file);
  EXPECT(dsv4_model_load(dir, NULL, &model) == DSV4_OK);
  EXPECT(dsv4_session_create(model, NULL, &s) == DSV4_OK);
  EXPECT(dsv4_session_append(s, prompt, 40, NULL) == DSV4_OK);
  EXPECT(dsv4_session_save(s, file, NULL) == DSV4_OK);
  EXPECT(dsv4_session_fork(s, &forked) == DSV4_OK);
  EXPECT(dsv4_session_append(s, next, 3, want) == DSV4_OK);
  EXPECT(dsv4_session_load(model, file, NULL, &loaded) == DSV4_OK);
  EXPECT(dsv4_session_position(loaded, &position) == DSV4_OK && position == 40);
  EXPECT(dsv4_session_append(loaded, next, 3, got) == DSV4_OK);
  EXPECT(dsv4_session_append(forked, next, 3, got_fork) == DSV4_OK);
  EXPECT(memcmp(want, got, sizeof want) == 0);
  EXPECT(memcmp(want, got_fork, sizeof want) == 0);
  /* The window-less and checkpoint strategies restore the same logits; truncate rewinds. */
  {
    dsv4_session *base = NULL, *restored = NULL, *rewound = NULL;
    static float got_restored[3 * 256], got_rewound[3 * 256];
    int strategy;
    dsv4_session_params tiered = dsv4_session_default_params();
    dsv4_tier_stats ts;
    tiered.ram_budget = 1; /* everything that can go to disk does */
    tiered.window_checkpoint_interval = 16;
    EXPECT(dsv4_session_load(model, file, &tiered, &base) == DSV4_OK); /* the 40-token session */
    {
      /* 300 tokens fill whole blocks of compressed entries, which go to disk. */
      static int32_t long_prompt[300];
      dsv4_session* tier = NULL;
      for (i = 0; i < 300; ++i) long_prompt[i] = (int32_t)((i * 53 + 1) % 256);
      EXPECT(dsv4_session_create(model, &tiered, &tier) == DSV4_OK);
      EXPECT(dsv4_session_append(tier, long_prompt, 300, NULL) == DSV4_OK);
      ts.struct_size = sizeof ts;
      EXPECT(dsv4_session_tier_stats(tier, &ts) == DSV4_OK);
      EXPECT(ts.disk_bytes > 0 && ts.file_bytes > 0 && ts.bytes_written > 0);
      dsv4_session_free(tier);
    }
    ts.struct_size = 8;
    EXPECT(dsv4_session_tier_stats(base, &ts) == DSV4_ERR_INVALID_ARGUMENT);
    EXPECT(dsv4_session_tier_stats(NULL, &ts) == DSV4_ERR_INVALID_ARGUMENT);
    tiered.ram_budget = -1;
    EXPECT(dsv4_session_create(model, &tiered, &restored) == DSV4_ERR_INVALID_ARGUMENT &&
           restored == NULL);
    for (strategy = DSV4_SWA_CHECKPOINT; strategy <= DSV4_SWA_NONE; ++strategy) {
      dsv4_save_params p = dsv4_save_default_params();
      p.swa_strategy = strategy;
      p.checkpoint_interval = 16;
      EXPECT(dsv4_session_save(base, file, &p) == DSV4_OK);
      EXPECT(dsv4_session_load(model, file, NULL, &restored) == DSV4_OK);
      EXPECT(dsv4_session_append(restored, next, 3, got_restored) == DSV4_OK);
      EXPECT(memcmp(want, got_restored, sizeof want) == 0);
      dsv4_session_free(restored);
      restored = NULL;
    }
    dsv4_session_free(base);
    sp.swa_strategy = DSV4_SWA_CHECKPOINT;
    sp.checkpoint_interval = 0;
    EXPECT(dsv4_session_save(s, file, &sp) == DSV4_ERR_INVALID_ARGUMENT);
    sp = dsv4_save_default_params();
    /* s holds 43 tokens: back to 40, then the same 3 again. */
    EXPECT(dsv4_session_fork(s, &rewound) == DSV4_OK);
    EXPECT(dsv4_session_truncate(rewound, 44) == DSV4_ERR_OUT_OF_RANGE);
    EXPECT(dsv4_session_truncate(rewound, -1) == DSV4_ERR_OUT_OF_RANGE);
    EXPECT(dsv4_session_truncate(NULL, 1) == DSV4_ERR_INVALID_ARGUMENT);
    EXPECT(dsv4_session_truncate(rewound, 40) == DSV4_OK);
    EXPECT(dsv4_session_position(rewound, &position) == DSV4_OK && position == 40);
    EXPECT(dsv4_session_append(rewound, next, 3, got_rewound) == DSV4_OK);
    EXPECT(memcmp(want, got_rewound, sizeof want) == 0);
    dsv4_session_free(rewound);
  }
  /* Bad input. */
  sp.swa_strategy = 9;
  EXPECT(dsv4_session_save(s, file, &sp) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_session_save(NULL, file, NULL) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_session_save(s, NULL, NULL) == DSV4_ERR_INVALID_ARGUMENT);
  {
    /* A failed call sets *out to NULL: give it a handle of its own. */
    dsv4_session* none = s;
    EXPECT(dsv4_session_fork(NULL, &none) == DSV4_ERR_INVALID_ARGUMENT && none == NULL);
    none = s;
    EXPECT(dsv4_session_load(model, NULL, NULL, &none) == DSV4_ERR_INVALID_ARGUMENT &&
           none == NULL);
  }
  f = fopen(bad, "wb");
  if (f) {
    fputs("not a session", f);
    fclose(f);
  }
  dsv4_session_free(loaded);
  loaded = NULL;
  EXPECT(dsv4_session_load(model, bad, NULL, &loaded) == DSV4_ERR_CORRUPT_FILE && loaded == NULL);
  EXPECT(strstr(dsv4_last_error(), "session file") != NULL);
  /* The prefix store: save the 40-token session, resume a 43-token prompt from it. */
  {
    char store_dir[1200];
    dsv4_prefix_store* store = NULL;
    dsv4_session* resumed = NULL;
    int32_t prompt43[43];
    snprintf(store_dir, sizeof store_dir, "%s.store", file);
    for (i = 0; i < 40; ++i) prompt43[i] = prompt[i];
    for (i = 0; i < 3; ++i) prompt43[40 + i] = next[i];
    EXPECT(dsv4_prefix_store_open(store_dir, &store) == DSV4_OK);
    dsv4_session_free(forked);
    forked = NULL;
    EXPECT(dsv4_session_load(model, file, NULL, &forked) == DSV4_OK); /* at 40 */
    EXPECT(dsv4_prefix_store_save(store, forked, NULL) == DSV4_OK);
    EXPECT(dsv4_prefix_store_load(store, model, prompt43, 43, NULL, &resumed) == DSV4_OK);
    EXPECT(dsv4_session_position(resumed, &position) == DSV4_OK && position == 40);
    EXPECT(dsv4_session_append(resumed, next, 3, got) == DSV4_OK);
    EXPECT(memcmp(want, got, sizeof want) == 0);
    dsv4_session_free(resumed);
    resumed = NULL;
    EXPECT(dsv4_prefix_store_load(store, model, NULL, 5, NULL, &resumed) ==
               DSV4_ERR_INVALID_ARGUMENT &&
           resumed == NULL);
    dsv4_prefix_store_free(store);
    { /* cleanup of the test's own directory */
      char cmd[1300];
      snprintf(cmd, sizeof cmd, "rm -rf '%s'", store_dir);
      EXPECT(system(cmd) == 0);
    }
  }
  remove(file);
  remove(bad);
  dsv4_session_free(forked);
  dsv4_session_free(s);
  dsv4_model_free(model);
}

/* The planner: V4-Flash at 1M tokens with the packed cache is about 3.4 GiB. */
static void test_plan(const char* golden_dir) {
  char dir[1024];
  dsv4_model* model = NULL;
  dsv4_plan_params pp = dsv4_plan_default_params();
  dsv4_plan_result r;
  memset(&r, 0, sizeof r);
  r.struct_size = sizeof r;
  pp.context = 1048576;
  pp.kv_format = DSV4_KV_PACKED;
  pp.ram_budget = (uint64_t)1 << 30;
  EXPECT(dsv4_plan(NULL, "v4-flash", &pp, &r) == DSV4_OK);
  EXPECT(r.cache_bytes > (uint64_t)34 * ((uint64_t)1 << 30) / 10 &&
         r.cache_bytes < (uint64_t)35 * ((uint64_t)1 << 30) / 10);
  EXPECT(r.cache_bytes_per_token > 3514.0 && r.cache_bytes_per_token < 3515.0);
  EXPECT(r.cache_ram_bytes == ((uint64_t)1 << 30) &&
         r.cache_disk_bytes == r.cache_bytes - r.cache_ram_bytes);
  EXPECT(r.cache_bytes * 10 < r.dense_mla_bytes); /* about 5% with packed entries */
  EXPECT(dsv4_plan(NULL, "v5", &pp, &r) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_plan(NULL, NULL, &pp, &r) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_plan(NULL, "v4-pro", &pp, NULL) == DSV4_ERR_INVALID_ARGUMENT);
  pp.context = -1;
  EXPECT(dsv4_plan(NULL, "v4-pro", &pp, &r) == DSV4_ERR_INVALID_ARGUMENT);
  path_join(dir, sizeof dir, golden_dir, "tiny-a");
  EXPECT(dsv4_model_load(dir, NULL, &model) == DSV4_OK);
  pp = dsv4_plan_default_params();
  pp.context = 400;
  r.struct_size = sizeof r;
  EXPECT(dsv4_plan(model, NULL, &pp, &r) == DSV4_OK && r.weight_bytes > 100000 &&
         r.cache_bytes > 0);
  dsv4_model_free(model);
}

static int g_abort_calls = 0;
static int abort_after_two(void* user) {
  ++g_abort_calls;
  return g_abort_calls > *(const int*)user;
}

/* v2 calls: append_ex with output modes and cancellation, per-session threads, resident bytes. */
static void test_append_ex(const char* golden_dir) {
  char dir[1024];
  dsv4_model* model = NULL;
  dsv4_session* session = NULL;
  dsv4_session_params sp = dsv4_session_default_params();
  dsv4_append_params ap = dsv4_append_default_params();
  int32_t tokens[40];
  static float all[40 * 256], last[256], after_cancel[256], expected[256];
  size_t resident = 0;
  int64_t position = -1, vocab = 0;
  int i, limit = 2;
  path_join(dir, sizeof dir, golden_dir, "tiny-a-q");
  EXPECT(dsv4_model_load(dir, NULL, &model) == DSV4_OK);
  EXPECT(dsv4_model_resident_bytes(model, &resident) == DSV4_OK && resident > 100000);
  EXPECT(dsv4_model_resident_bytes(NULL, &resident) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_model_resident_bytes(model, NULL) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_model_n_vocab(model, &vocab) == DSV4_OK && vocab == 256);
  for (i = 0; i < 40; ++i) tokens[i] = (i * 29 + 3) % 256;
  sp.n_threads = -2;
  EXPECT(dsv4_session_create(model, &sp, &session) == DSV4_ERR_INVALID_ARGUMENT);
  sp.n_threads = 1;
  EXPECT(dsv4_session_create(model, &sp, &session) == DSV4_OK);
  EXPECT(ap.output == DSV4_OUTPUT_ALL);

  /* ALL needs n_tokens rows; LAST one; NONE none. */
  EXPECT(dsv4_session_append_ex(session, tokens, 40, NULL, all, 39 * 256) ==
         DSV4_ERR_BUFFER_TOO_SMALL);
  ap.output = DSV4_OUTPUT_LAST;
  EXPECT(dsv4_session_append_ex(session, tokens, 40, &ap, last, 255) == DSV4_ERR_BUFFER_TOO_SMALL);
  ap.output = 7;
  EXPECT(dsv4_session_append_ex(session, tokens, 40, &ap, last, 256) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_session_position(session, &position) == DSV4_OK && position == 0);
  ap.output = DSV4_OUTPUT_NONE;
  EXPECT(dsv4_session_append_ex(session, tokens, 39, &ap, NULL, 0) == DSV4_OK);
  ap.output = DSV4_OUTPUT_LAST;
  EXPECT(dsv4_session_append_ex(session, tokens + 39, 1, &ap, expected, 256) == DSV4_OK);

  /* A cancelled append leaves the session as it was: the retry gives the same logits. */
  EXPECT(dsv4_session_reset(session) == DSV4_OK);
  ap.output = DSV4_OUTPUT_NONE;
  EXPECT(dsv4_session_append_ex(session, tokens, 39, &ap, NULL, 0) == DSV4_OK);
  ap.output = DSV4_OUTPUT_LAST;
  ap.abort_cb = abort_after_two;
  ap.abort_user = &limit;
  EXPECT(dsv4_session_append_ex(session, tokens + 39, 1, &ap, after_cancel, 256) ==
         DSV4_ERR_CANCELLED);
  EXPECT(g_abort_calls == 3);
  EXPECT(dsv4_session_position(session, &position) == DSV4_OK && position == 39);
  ap.abort_cb = NULL;
  EXPECT(dsv4_session_append_ex(session, tokens + 39, 1, &ap, after_cancel, 256) == DSV4_OK);
  EXPECT(memcmp(after_cancel, expected, sizeof expected) == 0);
  EXPECT(dsv4_session_append_ex(NULL, tokens, 1, &ap, last, 256) == DSV4_ERR_INVALID_ARGUMENT);
  dsv4_session_free(session);
  dsv4_model_free(model);
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

static float max_abs_diff(const float* a, const float* b, size_t n) {
  float worst = 0.0f;
  size_t i;
  for (i = 0; i < n; ++i) {
    const float d = a[i] > b[i] ? a[i] - b[i] : b[i] - a[i];
    if (d > worst) worst = d;
  }
  return worst;
}

#define N_TOKENS 40
#define VOCAB 256

static void test_session(const char* golden_dir) {
  char dir[1024];
  dsv4_model* model = NULL;
  dsv4_session* prefill = NULL;
  dsv4_session* decode = NULL;
  int32_t tokens[N_TOKENS];
  static float logits_prefill[N_TOKENS * VOCAB];
  static float logits_decode[N_TOKENS * VOCAB];
  int64_t position = -1;
  size_t bytes = 0, window_bytes = 0;
  int32_t bad_token;
  int i;
  dsv4_session_params params = dsv4_session_default_params();
  path_join(dir, sizeof dir, golden_dir, "tiny-a");
  if (dsv4_model_load(dir, NULL, &model) != DSV4_OK) {
    EXPECT(0);
    return;
  }
  for (i = 0; i < N_TOKENS; ++i) tokens[i] = (int32_t)((i * 37 + 11) % VOCAB);

  EXPECT(dsv4_session_create(NULL, NULL, &prefill) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_session_create(model, NULL, NULL) == DSV4_ERR_INVALID_ARGUMENT);
  params.max_positions = -3;
  EXPECT(dsv4_session_create(model, &params, &prefill) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(prefill == NULL);
  EXPECT(dsv4_session_create(model, NULL, &prefill) == DSV4_OK);
  EXPECT(dsv4_session_create(model, NULL, &decode) == DSV4_OK);
  if (!prefill || !decode) return;

  /* Bad input leaves the session untouched. */
  bad_token = VOCAB;
  EXPECT(dsv4_session_append(prefill, &bad_token, 1, NULL) == DSV4_ERR_OUT_OF_RANGE);
  EXPECT(strstr(dsv4_last_error(), "256") != NULL);
  bad_token = -1;
  EXPECT(dsv4_session_append(prefill, &bad_token, 1, NULL) == DSV4_ERR_OUT_OF_RANGE);
  EXPECT(dsv4_session_append(prefill, NULL, 3, NULL) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_session_append(NULL, tokens, 1, NULL) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_session_append_checked(prefill, tokens, N_TOKENS, logits_prefill,
                                     N_TOKENS * VOCAB - 1) == DSV4_ERR_BUFFER_TOO_SMALL);
  EXPECT(strstr(dsv4_last_error(), "10240") != NULL);
  EXPECT(dsv4_session_position(prefill, &position) == DSV4_OK && position == 0);
  EXPECT(dsv4_session_position(prefill, NULL) == DSV4_ERR_INVALID_ARGUMENT);

  /* Prefill at once vs one token at a time: the same logits. */
  EXPECT(dsv4_session_append_checked(prefill, tokens, N_TOKENS, logits_prefill, N_TOKENS * VOCAB) ==
         DSV4_OK);
  for (i = 0; i < N_TOKENS; ++i)
    EXPECT(dsv4_session_append(decode, &tokens[i], 1, &logits_decode[i * VOCAB]) == DSV4_OK);
  EXPECT(max_abs_diff(logits_prefill, logits_decode, N_TOKENS * VOCAB) < 1e-4f);
  EXPECT(dsv4_session_position(decode, &position) == DSV4_OK && position == N_TOKENS);

  /* Memory accounting: window of layer 0 holds min(T, W=16) keys of d=32 fp32 values. */
  EXPECT(dsv4_session_cache_bytes(prefill, 0, DSV4_CACHE_WINDOW, &window_bytes) == DSV4_OK);
  EXPECT(window_bytes == 16 * 32 * 4);
  EXPECT(dsv4_session_cache_bytes(prefill, 1, DSV4_CACHE_COMPRESSED, &bytes) == DSV4_OK &&
         bytes == 10 * 32 * 4);
  EXPECT(dsv4_session_cache_bytes(prefill, 1, DSV4_CACHE_INDEXER, &bytes) == DSV4_OK &&
         bytes == 10 * 16 * 4);
  EXPECT(dsv4_session_cache_bytes(prefill, -1, DSV4_CACHE_WINDOW, &bytes) == DSV4_OK &&
         bytes == 6 * window_bytes);
  EXPECT(dsv4_session_cache_bytes(prefill, 6, DSV4_CACHE_WINDOW, &bytes) == DSV4_ERR_OUT_OF_RANGE);
  EXPECT(dsv4_session_cache_bytes(prefill, 0, 9, &bytes) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_session_cache_bytes(prefill, 0, -1, &bytes) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_session_cache_bytes(prefill, 0, INT32_MAX, &bytes) == DSV4_ERR_INVALID_ARGUMENT);

  /* max_positions is enforced. */
  dsv4_session_free(decode);
  decode = NULL;
  params = dsv4_session_default_params();
  params.max_positions = 4;
  EXPECT(dsv4_session_create(model, &params, &decode) == DSV4_OK);
  EXPECT(dsv4_session_append(decode, tokens, 5, NULL) == DSV4_ERR_OUT_OF_RANGE);
  EXPECT(dsv4_session_append(decode, tokens, 4, NULL) == DSV4_OK);

  /* Reset starts over and reproduces the first logits. */
  EXPECT(dsv4_session_reset(prefill) == DSV4_OK);
  EXPECT(dsv4_session_position(prefill, &position) == DSV4_OK && position == 0);
  EXPECT(dsv4_session_append(prefill, tokens, 1, logits_decode) == DSV4_OK);
  EXPECT(max_abs_diff(logits_prefill, logits_decode, VOCAB) < 1e-5f);

  /* The model handle may go first: sessions keep the weights alive. */
  dsv4_model_free(model);
  EXPECT(dsv4_session_append(prefill, tokens + 1, 1, logits_decode) == DSV4_OK);
  dsv4_session_free(prefill);
  dsv4_session_free(decode);
  dsv4_session_free(NULL);
}

static void test_tokenizer(const char* tokenizer_dir) {
  dsv4_tokenizer* tok = NULL;
  const char* text = "Hello, world! <\xEF\xBD\x9CUser\xEF\xBD\x9C>"; /* with a literal <｜User｜> */
  int32_t ids[64], n_vocab = 0, bos = -2, eos = -2, id = 0;
  size_t n = 0, n_special = 0, len = 0;
  char out[256];
  dsv4_decoder* decoder = NULL;
  size_t i;
  EXPECT(dsv4_tokenizer_load(NULL, &tok) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_tokenizer_load("/nonexistent", &tok) == DSV4_ERR_IO && tok == NULL);
  EXPECT(dsv4_tokenizer_load(tokenizer_dir, &tok) == DSV4_OK);
  if (!tok) return;
  EXPECT(dsv4_tokenizer_n_vocab(tok, &n_vocab) == DSV4_OK && n_vocab == 129280);
  EXPECT(dsv4_tokenizer_bos(tok, &bos) == DSV4_OK && bos == 0);
  EXPECT(dsv4_tokenizer_eos(tok, &eos) == DSV4_OK && eos == 1);
  /* Size query, then the real call. */
  EXPECT(dsv4_tokenize(tok, text, strlen(text), 0, NULL, 0, &n) == DSV4_ERR_BUFFER_TOO_SMALL);
  EXPECT(n > 4 && n < 64);
  EXPECT(dsv4_tokenize(tok, text, strlen(text), 0, ids, 64, &n) == DSV4_OK);
  for (i = 0; i < n; ++i) EXPECT(ids[i] != 128803); /* no injection by default */
  EXPECT(dsv4_tokenize(tok, text, strlen(text), DSV4_TOKENIZE_SPECIAL, ids, 64, &n_special) ==
         DSV4_OK);
  EXPECT(ids[n_special - 1] == 128803);
  EXPECT(dsv4_detokenize(tok, ids, n_special, 0, out, 3, &len) == DSV4_ERR_BUFFER_TOO_SMALL);
  EXPECT(len == strlen(text));
  EXPECT(dsv4_detokenize(tok, ids, n_special, 0, out, sizeof out, &len) == DSV4_OK);
  EXPECT(strcmp(out, text) == 0);
  EXPECT(dsv4_tokenize(tok, "\xC3\x28", 2, 0, ids, 64, &n) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(strstr(dsv4_last_error(), "UTF-8") != NULL);
  ids[0] = 129280;
  EXPECT(dsv4_detokenize(tok, ids, 1, 0, out, sizeof out, &len) == DSV4_ERR_OUT_OF_RANGE);
  EXPECT(dsv4_tokenize(tok, text, strlen(text), 8u, ids, 64, &n) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_piece_to_token(tok,
                             "<\xEF\xBD\x9C"
                             "Assistant\xEF\xBD\x9C>",
                             17, &id) == DSV4_OK &&
         id == 128804);
  EXPECT(dsv4_token_to_piece(tok, 223, out, sizeof out, &len) == DSV4_OK && len == 1 &&
         out[0] == ' ');
  EXPECT(dsv4_token_to_piece(tok, -5, out, sizeof out, &len) == DSV4_ERR_OUT_OF_RANGE);
  /* Streaming: an emoji made of byte tokens comes out whole. */
  EXPECT(dsv4_tokenize(tok, "\xF0\x9F\x8C\xA7!", 5, 0, ids, 64, &n) == DSV4_OK);
  EXPECT(dsv4_decoder_create(tok, &decoder) == DSV4_OK);
  out[0] = 0;
  {
    char all[64] = "";
    for (i = 0; i < n; ++i) {
      EXPECT(dsv4_decoder_push(decoder, ids[i], out, sizeof out, &len) == DSV4_OK);
      strcat(all, out);
    }
    EXPECT(strcmp(all, "\xF0\x9F\x8C\xA7!") == 0);
  }
  dsv4_decoder_free(decoder);
  dsv4_tokenizer_free(tok);
  dsv4_tokenizer_free(NULL);
}

static void test_chat(const char* tokenizer_dir) {
  dsv4_tokenizer* tok = NULL;
  dsv4_chat_params params = dsv4_chat_default_params();
  const char* messages = "[{\"role\":\"user\",\"content\":\"What is a KV cache?\"}]";
  const char* completion =
      "Short answer.</think>A cache.<\xEF\xBD\x9C"
      "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>";
  char out[512];
  int32_t ids[64];
  size_t len = 0, n = 0;
  EXPECT(dsv4_tokenizer_load(tokenizer_dir, &tok) == DSV4_OK);
  params.thinking = 1;
  EXPECT(dsv4_chat_render(messages, &params, out, sizeof out, &len) == DSV4_OK);
  EXPECT(strstr(out,
                "What is a KV cache?<\xEF\xBD\x9C"
                "Assistant\xEF\xBD\x9C><think>") != NULL);
  EXPECT(dsv4_chat_render_tokens(tok, messages, &params, ids, 64, &n) == DSV4_OK);
  EXPECT(n > 3 && ids[0] == 0 && ids[n - 1] == 128821 && ids[n - 2] == 128804);
  EXPECT(dsv4_chat_render("{\"role\":1}", &params, out, sizeof out, &len) ==
         DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_chat_render(NULL, &params, out, sizeof out, &len) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_chat_parse(completion, strlen(completion), 1, out, sizeof out, &len) == DSV4_OK);
  EXPECT(strstr(out, "\"reasoning_content\":\"Short answer.\"") != NULL);
  EXPECT(dsv4_chat_parse("no end", 6, 0, out, sizeof out, &len) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(strstr(dsv4_last_error(), "missing EOS") != NULL);
  dsv4_tokenizer_free(tok);
}

static void test_sampler(void) {
  dsv4_sampler* s = NULL;
  dsv4_sampler_params p = dsv4_sampler_default_params();
  float logits[4] = {0.0f, 5.0f, 1.0f, -1.0f};
  const int32_t stops[1] = {2};
  int32_t token = -1, stop = 0;
  EXPECT(p.temperature == 1.0f && p.top_p == 1.0f && p.penalty_last_n == 64);
  p.temperature = 0.0f;
  p.stop_tokens = stops;
  p.n_stop_tokens = 1;
  EXPECT(dsv4_sampler_create(&p, NULL, &s) == DSV4_OK);
  EXPECT(dsv4_sampler_sample(s, logits, 4, &token) == DSV4_OK && token == 1);
  EXPECT(dsv4_sampler_accept(s, 1, &stop) == DSV4_OK && stop == 0);
  EXPECT(dsv4_sampler_accept(s, 2, &stop) == DSV4_OK && stop == 1);
  logits[3] = logits[3] * 0.0f / 0.0f; /* NaN */
  EXPECT(dsv4_sampler_sample(s, logits, 4, &token) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_sampler_reset(s) == DSV4_OK);
  dsv4_sampler_free(s);
  p.top_p = 2.0f;
  EXPECT(dsv4_sampler_create(&p, NULL, &s) == DSV4_ERR_INVALID_ARGUMENT && s == NULL);
  EXPECT(strstr(dsv4_last_error(), "top_p") != NULL);
}

static void test_session_last_error(const char* golden_dir) {
  char dir[1024];
  dsv4_model* model = NULL;
  dsv4_session* session = NULL;
  dsv4_tokenizer* tok = (dsv4_tokenizer*)1;
  const int32_t bad[1] = {1 << 30};
  path_join(dir, sizeof dir, golden_dir, "tiny-a");
  EXPECT(dsv4_model_load(dir, NULL, &model) == DSV4_OK);
  EXPECT(dsv4_model_tokenizer(model, &tok) == DSV4_ERR_IO && tok == NULL); /* goldens ship none */
  EXPECT(dsv4_session_create(model, NULL, &session) == DSV4_OK);
  EXPECT(strcmp(dsv4_session_last_error(session), "") == 0);
  EXPECT(dsv4_session_append(session, bad, 1, NULL) == DSV4_ERR_OUT_OF_RANGE);
  EXPECT(dsv4_backend_available("cpu", NULL) != DSV4_OK); /* another failure on this thread... */
  /* ...does not replace the session's own message. */
  EXPECT(strstr(dsv4_session_last_error(session), "token") != NULL);
  EXPECT(dsv4_session_reset(session) == DSV4_OK);
  EXPECT(strcmp(dsv4_session_last_error(session), "") == 0);
  EXPECT(strcmp(dsv4_session_last_error(NULL), "") == 0);
  dsv4_session_free(session);
  dsv4_model_free(model);
}

/* dsv4_decode_batch: two sessions at different positions advanced together give the logits of
 * their own one-token appends; bad batches change nothing. */
static void test_decode_batch(const char* golden_dir) {
  char dir[1024];
  dsv4_model* model = NULL;
  dsv4_session *a = NULL, *b = NULL, *solo_a = NULL, *solo_b = NULL;
  dsv4_session* batch[2];
  dsv4_session* twice[2];
  dsv4_append_params ap = dsv4_append_default_params();
  int32_t prompt[30], next[2] = {17, 200}, bad[2] = {17, 256};
  static float logits[2 * 256], want_a[256], want_b[256];
  int64_t position = -1;
  int i;
  path_join(dir, sizeof dir, golden_dir, "tiny-a-q");
  EXPECT(dsv4_model_load(dir, NULL, &model) == DSV4_OK);
  for (i = 0; i < 30; ++i) prompt[i] = (i * 41 + 5) % 256;
  EXPECT(dsv4_session_create(model, NULL, &a) == DSV4_OK);
  EXPECT(dsv4_session_create(model, NULL, &b) == DSV4_OK);
  EXPECT(dsv4_session_append(a, prompt, 30, NULL) == DSV4_OK);
  EXPECT(dsv4_session_append(b, prompt, 7, NULL) == DSV4_OK);
  EXPECT(dsv4_session_fork(a, &solo_a) == DSV4_OK);
  EXPECT(dsv4_session_fork(b, &solo_b) == DSV4_OK);
  ap.output = DSV4_OUTPUT_LAST;
  EXPECT(dsv4_session_append_ex(solo_a, &next[0], 1, &ap, want_a, 256) == DSV4_OK);
  EXPECT(dsv4_session_append_ex(solo_b, &next[1], 1, &ap, want_b, 256) == DSV4_OK);
  batch[0] = a;
  batch[1] = b;
  twice[0] = a;
  twice[1] = a;
  EXPECT(dsv4_decode_batch(batch, 2, next, &ap, logits, 511) == DSV4_ERR_BUFFER_TOO_SMALL);
  EXPECT(dsv4_decode_batch(batch, 2, bad, &ap, logits, 512) == DSV4_ERR_OUT_OF_RANGE);
  EXPECT(dsv4_decode_batch(twice, 2, next, &ap, logits, 512) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_decode_batch(NULL, 2, next, &ap, logits, 512) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_decode_batch(batch, 0, next, &ap, logits, 512) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_decode_batch(batch, 2, NULL, &ap, logits, 512) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_session_position(a, &position) == DSV4_OK && position == 30);
  EXPECT(dsv4_session_position(b, &position) == DSV4_OK && position == 7);
  EXPECT(dsv4_decode_batch(batch, 2, next, &ap, logits, 512) == DSV4_OK);
  EXPECT(memcmp(logits, want_a, sizeof want_a) == 0);
  EXPECT(memcmp(logits + 256, want_b, sizeof want_b) == 0);
  EXPECT(dsv4_session_position(b, &position) == DSV4_OK && position == 8);
  dsv4_session_free(a);
  dsv4_session_free(b);
  dsv4_session_free(solo_a);
  dsv4_session_free(solo_b);
  dsv4_model_free(model);
}

/* Every entry point refuses a NULL handle or a NULL required output with INVALID_ARGUMENT (never a
 * crash), clears the output handle it was given, and frees accept NULL. */
static void test_null_everywhere(const char* golden_dir, const char* tokenizer_dir) {
  char dir[1024], text[64];
  dsv4_model* model = NULL;
  dsv4_session* session = NULL;
  dsv4_tokenizer* tok = NULL;
  dsv4_decoder* decoder = (dsv4_decoder*)&text; /* not NULL: a failed create must clear it */
  dsv4_tokenizer* from_model = (dsv4_tokenizer*)&text;
  dsv4_prefix_store* store = (dsv4_prefix_store*)&text;
  dsv4_sampler* sampler = NULL;
  int32_t ids[8], id = 0, value = 0, stop = 0;
  int64_t i64 = 0;
  size_t n = 0, bytes = 0;
  float logits[256], big[512];
  dsv4_sampler_params sp = dsv4_sampler_default_params();
  memset(logits, 0, sizeof logits);
  memset(big, 0, sizeof big);
  path_join(dir, sizeof dir, golden_dir, "tiny-a");
  EXPECT(dsv4_model_load(dir, NULL, &model) == DSV4_OK);
  EXPECT(dsv4_session_create(model, NULL, &session) == DSV4_OK);
  EXPECT(dsv4_tokenizer_load(tokenizer_dir, &tok) == DSV4_OK);
  EXPECT(dsv4_sampler_create(&sp, NULL, &sampler) == DSV4_OK);
  ids[0] = 1;

  EXPECT(dsv4_model_n_embd(NULL, &i64) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_model_n_embd(model, NULL) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_model_layer_compress_ratio(NULL, 0, &i64) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_model_layer_compress_ratio(model, 0, NULL) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_model_layer_compress_ratio(model, 99, &i64) == DSV4_ERR_OUT_OF_RANGE);
  EXPECT(dsv4_model_tokenizer(NULL, &from_model) == DSV4_ERR_INVALID_ARGUMENT && !from_model);
  EXPECT(dsv4_session_reset(NULL) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_session_append_checked(NULL, ids, 1, big, 512) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_session_append_checked(session, NULL, 1, big, 512) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_session_cache_bytes(NULL, -1, 0, &bytes) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_session_cache_bytes(session, -1, 0, NULL) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_prefix_store_open(NULL, &store) == DSV4_ERR_INVALID_ARGUMENT && !store);
  dsv4_prefix_store_free(NULL);

  EXPECT(dsv4_tokenizer_n_vocab(NULL, &value) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_tokenizer_n_vocab(tok, NULL) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_tokenizer_bos(NULL, &value) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_tokenizer_eos(tok, NULL) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_tokenize(NULL, "a", 1, 0, ids, 8, &n) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_tokenize(tok, NULL, 1, 0, ids, 8, &n) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_tokenize(tok, "a", 1, 0, ids, 8, NULL) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_tokenize(tok, "a", 1, 0, NULL, 8, &n) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_detokenize(NULL, ids, 1, 0, text, 64, &n) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_detokenize(tok, NULL, 1, 0, text, 64, &n) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_detokenize(tok, ids, 1, 0, text, 64, NULL) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_token_to_piece(NULL, 1, text, 64, &n) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_token_to_piece(tok, 1, text, 64, NULL) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_piece_to_token(NULL, "a", 1, &id) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_piece_to_token(tok, NULL, 1, &id) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_piece_to_token(tok, "a", 1, NULL) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_decoder_create(NULL, &decoder) == DSV4_ERR_INVALID_ARGUMENT && !decoder);
  EXPECT(dsv4_decoder_create(tok, NULL) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_decoder_push(NULL, 1, text, 64, &n) == DSV4_ERR_INVALID_ARGUMENT);
  dsv4_decoder_free(NULL);
  EXPECT(dsv4_chat_render_tokens(NULL, "[]", NULL, ids, 8, &n) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_chat_render_tokens(tok, NULL, NULL, ids, 8, &n) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_chat_render_tokens(tok, "[]", NULL, ids, 8, NULL) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_chat_parse(NULL, 1, 0, text, 64, &n) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_chat_parse("a", 1, 0, text, 64, NULL) == DSV4_ERR_INVALID_ARGUMENT);

  EXPECT(dsv4_sampler_sample(NULL, logits, 256, &id) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_sampler_sample(sampler, NULL, 256, &id) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_sampler_sample(sampler, logits, 256, NULL) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_sampler_accept(NULL, 1, &stop) == DSV4_ERR_INVALID_ARGUMENT);
  EXPECT(dsv4_sampler_reset(NULL) == DSV4_ERR_INVALID_ARGUMENT);
  dsv4_sampler_free(NULL);
  EXPECT(dsv4_status_name((dsv4_status)12345) != NULL);

  dsv4_sampler_free(sampler);
  dsv4_tokenizer_free(tok);
  dsv4_session_free(session);
  dsv4_model_free(model);
}

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s GOLDEN_DIR CORRUPT_DIR TOKENIZER_DIR\n", argv[0]);
    return 2;
  }
  test_version();
  test_null_arguments(argv[1]);
  test_load_and_query(argv[1]);
  test_params_versioning(argv[1]);
  test_official_numerics(argv[1]);
  test_weight_layouts(argv[1]);
  test_saved_sessions(argv[1]);
  test_plan(argv[1]);
  test_bad_files(argv[2]);
  test_session(argv[1]);
  test_append_ex(argv[1]);
  test_decode_batch(argv[1]);
  test_null_everywhere(argv[1], argv[3]);
  test_tokenizer(argv[3]);
  test_chat(argv[3]);
  test_sampler();
  test_session_last_error(argv[1]);
  printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
