/* 02_c_generate: greedy generation through the C ABI.
 * usage: example_c_generate MODEL_DIR N_NEW TOKEN_ID...
 * Prints the N_NEW generated token ids, one line. */
#include <dsv4.h>
#include <stdio.h>
#include <stdlib.h>

static int fail(const char* what, dsv4_status status) {
  fprintf(stderr, "%s failed: %s: %s\n", what, dsv4_status_name(status), dsv4_last_error());
  return 1;
}

int main(int argc, char** argv) {
  dsv4_model* model = NULL;
  dsv4_session* session = NULL;
  dsv4_status status;
  int64_t vocab = 0;
  int32_t* prompt;
  float* logits;
  int n_prompt, n_new, i, step;
  if (argc < 4) {
    fprintf(stderr, "usage: %s MODEL_DIR N_NEW TOKEN_ID...\n", argv[0]);
    return 2;
  }
  n_new = atoi(argv[2]);
  n_prompt = argc - 3;
  if ((status = dsv4_model_load(argv[1], NULL, &model)) != DSV4_OK)
    return fail("dsv4_model_load", status);
  if ((status = dsv4_model_n_vocab(model, &vocab)) != DSV4_OK)
    return fail("dsv4_model_n_vocab", status);
  if ((status = dsv4_session_create(model, NULL, &session)) != DSV4_OK)
    return fail("dsv4_session_create", status);
  prompt = malloc(sizeof(int32_t) * (size_t)n_prompt);
  logits = malloc(sizeof(float) * (size_t)vocab * (size_t)n_prompt);
  if (!prompt || !logits) return 1;
  for (i = 0; i < n_prompt; ++i) prompt[i] = (int32_t)atoi(argv[3 + i]);

  /* The prompt in one call; the library takes the prefill path. */
  status = dsv4_session_append_checked(session, prompt, (size_t)n_prompt, logits,
                                       (size_t)vocab * (size_t)n_prompt);
  if (status != DSV4_OK) return fail("dsv4_session_append (prompt)", status);
  for (step = 0; step < n_new; ++step) {
    const float* last = logits + (step == 0 ? (size_t)vocab * (size_t)(n_prompt - 1) : 0);
    int32_t best = 0;
    for (i = 1; i < vocab; ++i)
      if (last[i] > last[best]) best = (int32_t)i;
    printf("%d%s", best, step + 1 == n_new ? "\n" : " ");
    /* One token at a time: the decode path. */
    status = dsv4_session_append_checked(session, &best, 1, logits, (size_t)vocab);
    if (status != DSV4_OK) return fail("dsv4_session_append (decode)", status);
  }
  free(prompt);
  free(logits);
  dsv4_session_free(session);
  dsv4_model_free(model);
  return 0;
}
