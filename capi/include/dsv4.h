/*
 * dsv4.h — the C ABI of dsv4, a DeepSeek-V4 inference library.
 *
 * Stability: everything in this header is the stable ABI. Enum values and struct fields are only
 * ever appended. Parameter structs begin with `struct_size`; initialise them with the matching
 * *_default_params() function (or *_INIT macro), which records the size you compiled against.
 * A struct_size smaller than the first version of a struct, or larger than 1024, is rejected with
 * DSV4_ERR_INVALID_ARGUMENT before anything past the known fields is read; a larger struct than
 * this library knows is accepted only when the unknown tail is zero (else DSV4_ERR_UNSUPPORTED).
 *
 * Errors: every function returns a dsv4_status. On failure, dsv4_last_error() returns a message
 * with context (file, tensor, expected vs found) that stays valid on the calling thread until its
 * next dsv4 call. Out-parameters are set to NULL/0 on failure. No C++ exception crosses this ABI.
 *
 * Ownership: *_load / *_create pair with *_free; *_free accepts NULL.
 *
 * Threads: a dsv4_model is immutable after loading; any number of threads may create sessions
 * from it and run them concurrently (each session's appends use that session's n_threads worker
 * threads, so several sessions share the cores without oversubscription when their n_threads add
 * up to the core count). A dsv4_session is used by one thread at a time: calls on the same session
 * must not overlap. dsv4_model_free may be called while sessions exist (they keep the model alive).
 *
 * Failure atomicity: an append that fails for any reason (bad token, limit, out of memory,
 * cancellation by the abort callback) leaves the session exactly as it was before the call:
 * position, cache and compressor state; the next append behaves as if the failed one never
 * happened.
 */
#ifndef DSV4_H
#define DSV4_H

#include <stddef.h>
#include <stdint.h>

#include "dsv4_version.h"

#if defined(_WIN32)
#if defined(DSV4_BUILDING_LIBRARY)
#define DSV4_API __declspec(dllexport)
#else
#define DSV4_API __declspec(dllimport)
#endif
#elif defined(__GNUC__)
#define DSV4_API __attribute__((visibility("default")))
#else
#define DSV4_API
#endif

#if defined(__GNUC__)
#define DSV4_NODISCARD __attribute__((warn_unused_result))
#else
#define DSV4_NODISCARD
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes. Values are pinned; new codes are appended. */
typedef enum dsv4_status {
  DSV4_OK = 0,
  DSV4_ERR_INVALID_ARGUMENT = 1, /* NULL pointer, bad size, bad value from the caller */
  DSV4_ERR_IO = 2,               /* missing file, permission, mmap failure */
  DSV4_ERR_CORRUPT_FILE = 3,     /* malformed file: truncated, bad header, bad JSON, bad offsets */
  DSV4_ERR_INVALID_CONFIG = 4,   /* config.json describes an impossible or unsupported model */
  DSV4_ERR_MODEL_MISMATCH = 5,   /* checkpoint tensor missing or of the wrong dtype or shape */
  DSV4_ERR_UNSUPPORTED = 6,      /* valid request this build or backend cannot serve */
  DSV4_ERR_OUT_OF_MEMORY = 7,
  DSV4_ERR_BUFFER_TOO_SMALL = 8, /* a caller buffer is too small; the needed size is reported */
  DSV4_ERR_OUT_OF_RANGE = 9,     /* an index (token id, layer) outside its range */
  DSV4_ERR_CANCELLED = 10,
  DSV4_ERR_INTERNAL = 11
} dsv4_status;

/* ---- version ---- */

/* "MAJOR.MINOR.PATCH" of the library actually loaded (compare with DSV4_VERSION_*). Static. */
DSV4_API const char* dsv4_version(void);
/* MAJOR*10000 + MINOR*100 + PATCH of the library actually loaded. */
DSV4_API uint32_t dsv4_version_number(void);

/* ---- errors ---- */

/* Static name of a status ("DSV4_ERR_IO"); "DSV4_ERR_UNKNOWN" for unknown values. */
DSV4_API const char* dsv4_status_name(dsv4_status status);
/* Message of the last failed call on this thread ("" if none). Valid until the thread's next call.
 */
DSV4_API const char* dsv4_last_error(void);

/* ---- backends ---- */

/* *available = 1 if backend `name` ("cpu", "cuda") is compiled in and has a device, else 0. */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_backend_available(const char* name, int32_t* available);

/* ---- model ---- */

typedef struct dsv4_model dsv4_model;

typedef struct dsv4_model_params {
  size_t struct_size;  /* sizeof(dsv4_model_params) as compiled by the caller */
  const char* backend; /* "cpu", "cuda", "best" (the best backend that supports every operator
                          the model needs); NULL = "cpu" */
  int32_t n_threads;   /* CPU threads; 0 = all cores */
  /* v2 (0.2): refuse with DSV4_ERR_OUT_OF_MEMORY a model whose estimated resident size exceeds
   * this many bytes; 0 = the memory the machine has available at load time. */
  uint64_t memory_limit;
} dsv4_model_params;

/* Defaults with struct_size filled in. */
DSV4_API dsv4_model_params dsv4_model_default_params(void);

/*
 * Loads a checkpoint directory (config.json + model.safetensors or model.safetensors.index.json
 * with its shards). `params` may be NULL for defaults. Validates the config and every tensor the
 * model needs before returning. On failure *out is NULL.
 * Weights stay in their stored formats (FP8, FP4, BF16, F32 are mapped from the files, not
 * copied), so the resident size is about the checkpoint's size.
 * Errors: INVALID_ARGUMENT (NULL dir/out, bad params), IO, CORRUPT_FILE (also a NaN/Inf weight
 * code, named in the message), INVALID_CONFIG, MODEL_MISMATCH, UNSUPPORTED (backend, or an
 * operator the backend lacks, named in the message), OUT_OF_MEMORY (estimated size over
 * memory_limit; the message gives both numbers).
 */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_model_load(const char* dir,
                                                    const dsv4_model_params* params,
                                                    dsv4_model** out);
/* Frees a model handle (NULL is fine). Sessions keep their model alive, so this is safe while
 * sessions created from it still exist. */
DSV4_API void dsv4_model_free(dsv4_model* model);

/* Config queries. Each writes its answer to the out-pointer; INVALID_ARGUMENT on NULL. */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_model_n_vocab(const dsv4_model* model, int64_t* out);
DSV4_API DSV4_NODISCARD dsv4_status dsv4_model_n_layers(const dsv4_model* model, int64_t* out);
DSV4_API DSV4_NODISCARD dsv4_status dsv4_model_n_embd(const dsv4_model* model, int64_t* out);
/* Compress ratio of decoder layer `layer`: 0 (sliding window only), 4 (CSA) or another value (HCA).
 * OUT_OF_RANGE when layer is not in [0, n_layers). */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_model_layer_compress_ratio(const dsv4_model* model,
                                                                    int64_t layer, int64_t* out);

/* Bytes the loaded weights occupy (stored formats plus fp32 copies of small vectors). */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_model_resident_bytes(const dsv4_model* model, size_t* out);

/* ---- session ---- */

typedef struct dsv4_session dsv4_session;

typedef struct dsv4_session_params {
  size_t struct_size;    /* sizeof(dsv4_session_params) as compiled by the caller */
  int64_t max_positions; /* refuse to grow past this many tokens; 0 = unlimited */
  int64_t max_chunk;     /* tokens per internal forward step (bounds activation memory); 0 = 1024 */
  /* v2 (0.2): worker threads for this session's appends; 0 = the model's n_threads. */
  int32_t n_threads;
} dsv4_session_params;

DSV4_API dsv4_session_params dsv4_session_default_params(void);

/* Creates a session (its own KV cache) over `model`; params may be NULL. */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_session_create(dsv4_model* model,
                                                        const dsv4_session_params* params,
                                                        dsv4_session** out);
DSV4_API void dsv4_session_free(dsv4_session* session);

/*
 * Appends n_tokens token ids (a prompt, a chunk of one, or a single decode step; the library
 * picks the path) and, when `logits` is not NULL, writes n_tokens x vocab floats: the logits
 * after each appended position. `logits` must hold n_tokens * vocab floats; prefer
 * dsv4_session_append_checked, which verifies the capacity.
 * Every token id is checked before anything changes: on error the session is unchanged.
 * Errors: INVALID_ARGUMENT (NULL session, NULL tokens with n_tokens > 0), OUT_OF_RANGE (a token id
 * outside [0, vocab), or past max_positions), OUT_OF_MEMORY.
 */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_session_append(dsv4_session* session,
                                                        const int32_t* tokens, size_t n_tokens,
                                                        float* logits);
/* As dsv4_session_append, with the capacity of `logits` in floats: BUFFER_TOO_SMALL (and nothing
 * appended) when logits_capacity < n_tokens * vocab. */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_session_append_checked(dsv4_session* session,
                                                                const int32_t* tokens,
                                                                size_t n_tokens, float* logits,
                                                                size_t logits_capacity);
/* Which logits an append writes (dsv4_append_params.output). */
#define DSV4_OUTPUT_NONE 0 /* none: the head is skipped (prefill nobody reads) */
#define DSV4_OUTPUT_LAST 1 /* the last appended position: one row of vocab floats */
#define DSV4_OUTPUT_ALL 2  /* every appended position: n_tokens rows of vocab floats */

typedef struct dsv4_append_params {
  size_t struct_size; /* sizeof(dsv4_append_params) as compiled by the caller */
  int32_t output;     /* DSV4_OUTPUT_*; the default params say DSV4_OUTPUT_ALL */
  /* Called between chunks and between layers with abort_user; a non-zero return ends the append
   * with DSV4_ERR_CANCELLED and the session unchanged. NULL = never cancel. */
  int (*abort_cb)(void* user);
  void* abort_user;
} dsv4_append_params;

DSV4_API dsv4_append_params dsv4_append_default_params(void);

/*
 * Appends n_tokens token ids with output selection and cancellation. params may be NULL
 * (defaults). `logits` (capacity in floats) receives vocab floats for OUTPUT_LAST and
 * n_tokens * vocab for OUTPUT_ALL; it may be NULL for OUTPUT_NONE or when no logits are wanted.
 * Errors: INVALID_ARGUMENT (NULL session, NULL tokens with n_tokens > 0, unknown output mode),
 * BUFFER_TOO_SMALL (nothing appended), OUT_OF_RANGE, OUT_OF_MEMORY, CANCELLED. On every error the
 * session is unchanged.
 */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_session_append_ex(dsv4_session* session,
                                                           const int32_t* tokens, size_t n_tokens,
                                                           const dsv4_append_params* params,
                                                           float* logits, size_t logits_capacity);

/* Number of tokens appended so far. */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_session_position(const dsv4_session* session,
                                                          int64_t* out);
/* Drops every cached token: the session starts again at position 0. */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_session_reset(dsv4_session* session);

/* KV-cache kinds for dsv4_session_cache_bytes. */
typedef enum dsv4_cache_kind {
  DSV4_CACHE_WINDOW = 0,     /* sliding-window keys (the last W tokens) */
  DSV4_CACHE_COMPRESSED = 1, /* CSA/HCA compressed entries */
  DSV4_CACHE_INDEXER = 2,    /* lightning-indexer keys (CSA layers) */
  DSV4_CACHE_STATE = 3       /* compressor state of the incomplete window */
} dsv4_cache_kind;

/* Bytes the session's cache holds for `kind` in `layer` (layer = -1: all layers). */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_session_cache_bytes(const dsv4_session* session,
                                                             int64_t layer, dsv4_cache_kind kind,
                                                             size_t* out);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* DSV4_H */
