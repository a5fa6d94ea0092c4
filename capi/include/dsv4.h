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
  /* v3 (0.4): the numerics the model runs in, DSV4_NUMERICS_*; 0 = DSV4_NUMERICS_EXACT. */
  int32_t numerics;
  /* Padding of the v3 struct, named so that `weights` starts past the v3 size (a v3 caller's
   * uninitialised padding is never read as a layout). Ignored. */
  int32_t reserved0;
  /* v4 (0.6): how the GEMM weights are held, DSV4_WEIGHTS_*; 0 = DSV4_WEIGHTS_REPACKED. */
  int32_t weights;
  int32_t reserved1; /* padding, ignored */
} dsv4_model_params;

/* Weight layouts (dsv4_model_params.weights). */
#define DSV4_WEIGHTS_REPACKED                                                  \
  0 /* each GEMM weight copied once at load, in huge pages, into the layout    \
       its backend reads fastest (the CPU backend interleaves the rows of FP8, \
       FP4 and short-row matrices in groups of 4 so a decode step streams      \
       them; the mapped file's pages are given back as each is copied, so the  \
       resident size stays about the checkpoint's) */
#define DSV4_WEIGHTS_STORED                                                   \
  1 /* as the checkpoint stores them, mapped from its files: no copy at load, \
       pages shared with the page cache and other processes */

/* Numerics modes (dsv4_model_params.numerics; docs/numerics.md). */
#define DSV4_NUMERICS_EXACT 0 /* fp32 activations on the dequantised weights (default) */
#define DSV4_NUMERICS_OFFICIAL                                                   \
  1 /* DeepSeek's own inference numerics, rounding point by rounding point: FP8  \
       activation quantisation before FP8/FP4 GEMMs, bf16 activations, the       \
       official sparse-attention and Sinkhorn kernels, FP4 indexer queries. Its  \
       sessions store the packed cache (kv_format DSV4_KV_F32 means packed here; \
       DSV4_KV_BF16 is refused). CPU backend only. */

/* Defaults with struct_size filled in. */
DSV4_API dsv4_model_params dsv4_model_default_params(void);

/*
 * Loads a checkpoint directory (config.json + model.safetensors or model.safetensors.index.json
 * with its shards). `params` may be NULL for defaults. Validates the config and every tensor the
 * model needs before returning. On failure *out is NULL.
 * Weights stay in their stored formats (FP8, FP4, BF16, F32; never widened), so the resident
 * size is about the checkpoint's size; see dsv4_model_params.weights for their layout.
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

/* The numerics mode the model was loaded with (DSV4_NUMERICS_*). */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_model_numerics(const dsv4_model* model, int32_t* out);

/* Bytes the loaded weights occupy (stored formats plus fp32 copies of small vectors). */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_model_resident_bytes(const dsv4_model* model, size_t* out);

/* ---- memory planner (v0.4) ---- */

typedef struct dsv4_plan_params {
  size_t struct_size;  /* sizeof(dsv4_plan_params) as compiled by the caller */
  int64_t context;     /* tokens of context to plan for */
  int32_t kv_format;   /* DSV4_KV_*; 0 = DSV4_KV_F32 */
  int32_t reserved0;   /* 0 */
  uint64_t ram_budget; /* bytes of RAM for the cache; 0 = no budget */
} dsv4_plan_params;

typedef struct dsv4_plan_result {
  size_t struct_size;              /* set by the caller: the size of the struct it passes */
  uint64_t weight_bytes;           /* the loaded model's resident bytes, or a preset's official
                                      checkpoint bytes (MTP layers excluded) */
  uint64_t cache_bytes;            /* the session's cache at `context` tokens */
  uint64_t cache_bytes_by_kind[4]; /* dsv4_cache_kind order: window, compressed, indexer, state */
  double cache_bytes_per_token;    /* growth per token once the window is full */
  uint64_t dense_mla_bytes;        /* a V3.2-style dense MLA cache at `context` tokens: 576 bf16
                                      values per token per layer, 61 layers */
  uint64_t cache_ram_bytes;        /* the part of the cache within ram_budget */
  uint64_t cache_disk_bytes;       /* the part beyond it */
} dsv4_plan_result;

DSV4_API dsv4_plan_params dsv4_plan_default_params(void);

/*
 * What a session of `params->context` tokens needs, for a loaded model (`model`) or a preset
 * (`preset`: "v4-flash", "v4-pro", "v4-flash-slice", "demo"; exactly one of the two is non-NULL).
 * Writes min(out->struct_size, sizeof(dsv4_plan_result)) bytes of the answer.
 * Errors: INVALID_ARGUMENT (NULL out, both or neither of model/preset, unknown preset, negative
 * context, unknown kv_format, out->struct_size too small).
 */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_plan(const dsv4_model* model, const char* preset,
                                              const dsv4_plan_params* params,
                                              dsv4_plan_result* out);

/* ---- session ---- */

typedef struct dsv4_session dsv4_session;

typedef struct dsv4_session_params {
  size_t struct_size;    /* sizeof(dsv4_session_params) as compiled by the caller */
  int64_t max_positions; /* refuse to grow past this many tokens; 0 = unlimited */
  int64_t max_chunk;     /* tokens per internal forward step (bounds activation memory); 0 = 1024 */
  /* v2 (0.2): worker threads for this session's appends; 0 = the model's n_threads. */
  int32_t n_threads;
  /* Padding of the v2 struct, named so that kv_format starts past the v2 size (a v2 caller's
   * uninitialised padding is never read as a format). Ignored. */
  int32_t reserved0;
  /* v3 (0.3): how the KV cache stores entries, DSV4_KV_*; 0 = DSV4_KV_F32. */
  int32_t kv_format;
  /* Padding of the v3 struct, named for the same reason as reserved0. Ignored. */
  int32_t reserved1;
  /* v4 (0.5): the disk tier. At most ram_budget bytes of compressed entries and indexer keys stay
   * in RAM (0 = no limit); colder blocks go to an unnamed, zstd-compressed, checksummed scratch
   * file in spill_dir (NULL or "" = the system temp directory) and are read back when needed.
   * The logits do not change. */
  int64_t ram_budget;
  const char* spill_dir;
  /* v4 (0.5): keep the window rings and compressor states every this many tokens (0 = never),
   * so that DSV4_SWA_CHECKPOINT saves at this interval write them as they are and a truncate
   * back to the latest checkpoint or later recomputes only the tokens since. */
  int64_t window_checkpoint_interval;
  /* v4 (0.5): opt-in, lossy: compressed entries on the disk tier are stored as e2m1 nope values
   * with a scale per 16 and bf16 rope values (380 instead of 584 bytes for V4), and come back with
   * those values (docs/numerics.md gives the deviation). 0 = lossless. */
  int32_t lossy_cold_entries;
  int32_t reserved2; /* padding, ignored */
} dsv4_session_params;

/* KV-cache storage formats (dsv4_session_params.kv_format). */
#define DSV4_KV_F32 0  /* fp32 entries: the exact numerics (default) */
#define DSV4_KV_BF16 1 /* bf16 entries: half the bytes */
#define DSV4_KV_PACKED                                                        \
  2 /* the official layout: window and compressed entries as e4m3 nope values \
       with a power-of-two scale per 64 plus bf16 rope values (584 bytes for  \
       V4's 512 dims), indexer keys Hadamard-rotated as e2m1 with a scale per \
       32 (68 bytes for 128 dims) */

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

/*
 * One decode step of several sessions at once (continuous batching, since 0.6): appends
 * tokens[i] to sessions[i] in one pass over the weights, and writes session i's logits to
 * logits + i * vocab (n_sessions rows; logits may be NULL, or params->output DSV4_OUTPUT_NONE, for
 * none). Each session gets exactly the logits and cache a one-token dsv4_session_append would have
 * given it. The sessions must be distinct and share one model; they may differ in position and
 * cache format. params may be NULL (defaults; DSV4_OUTPUT_LAST and _ALL both mean one row each).
 * Errors: INVALID_ARGUMENT (NULL arrays or sessions, n_sessions 0, a session twice, sessions of
 * different models, unknown output mode), BUFFER_TOO_SMALL (logits_capacity < n_sessions * vocab),
 * OUT_OF_RANGE (a token id outside the vocabulary, a session at max_positions), OUT_OF_MEMORY,
 * CANCELLED. All or nothing: on every error each session is unchanged.
 */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_decode_batch(dsv4_session* const* sessions,
                                                      size_t n_sessions, const int32_t* tokens,
                                                      const dsv4_append_params* params,
                                                      float* logits, size_t logits_capacity);

/* Number of tokens appended so far. */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_session_position(const dsv4_session* session,
                                                          int64_t* out);
/* Drops every cached token: the session starts again at position 0. */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_session_reset(dsv4_session* session);

/* The disk tier of a session (dsv4_session_params.ram_budget). */
typedef struct dsv4_tier_stats {
  size_t struct_size;     /* set by the caller to sizeof(dsv4_tier_stats); the library writes
                             at most that many bytes and sets it to what it wrote */
  uint64_t ram_bytes;     /* compressed entries and indexer keys in RAM */
  uint64_t disk_bytes;    /* ... on the disk tier (uncompressed size) */
  uint64_t block_hits;    /* block reads served from RAM */
  uint64_t block_misses;  /* block reads from the spill file */
  uint64_t bytes_written; /* to the spill file (compressed) */
  uint64_t bytes_read;    /* from the spill file (compressed) */
  uint64_t file_bytes;    /* the spill file's length */
} dsv4_tier_stats;

/* v0.5. The disk tier's figures; all zero but ram_bytes for a session without a RAM budget.
 * Errors: INVALID_ARGUMENT (NULL, struct_size too small). */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_session_tier_stats(const dsv4_session* session,
                                                            dsv4_tier_stats* out);

/* KV-cache kinds for dsv4_session_cache_bytes. */
typedef enum dsv4_cache_kind {
  DSV4_CACHE_WINDOW = 0,     /* sliding-window keys (the last W tokens) */
  DSV4_CACHE_COMPRESSED = 1, /* CSA/HCA compressed entries */
  DSV4_CACHE_INDEXER = 2,    /* lightning-indexer keys (CSA layers) */
  DSV4_CACHE_STATE = 3       /* compressor state of the incomplete window */
} dsv4_cache_kind;

/* Bytes the session's cache holds for `kind` (a dsv4_cache_kind) in `layer` (layer = -1: all
 * layers). Since 0.6 `kind` is an int32_t (the same ABI as the enum it was): any value is
 * range-checked (INVALID_ARGUMENT). */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_session_cache_bytes(const dsv4_session* session,
                                                             int64_t layer, int32_t kind,
                                                             size_t* out);

/* ---- saved sessions (v0.4) ---- */

typedef struct dsv4_save_params {
  size_t struct_size;   /* sizeof(dsv4_save_params) as compiled by the caller */
  int32_t swa_strategy; /* how sliding-window entries are kept, DSV4_SWA_*; 0 = DSV4_SWA_FULL */
  /* v0.5: */
  int64_t checkpoint_interval; /* DSV4_SWA_CHECKPOINT: tokens between checkpoints (> 0) */
} dsv4_save_params;

/* Sliding-window strategies of a saved session (the DeepSeek-V4 paper's three). Every strategy
 * restores to the same logits, bit for bit; they trade file size against restore time. */
#define DSV4_SWA_FULL 0 /* every layer's window ring is stored: a restore is a plain read */
#define DSV4_SWA_CHECKPOINT                                                                      \
  1 /* the rings as of the last multiple of checkpoint_interval: a restore recomputes the tokens \
       since (fewer than the interval) */
#define DSV4_SWA_NONE                                                                         \
  2 /* no rings: a restore recomputes the last tokens the rings depend on (about layers times \
       the window) from the stored token ids; the smallest file */

DSV4_API dsv4_save_params dsv4_save_default_params(void);

/*
 * Writes the session (token ids, KV cache in its storage format, compressor state) to `path`:
 * a versioned file with a checksum per section, written to a temporary file next to `path`,
 * fsync'ed and renamed over it, so a failure (disk full included) leaves any previous file at
 * `path` intact. params may be NULL. Errors: INVALID_ARGUMENT (NULL, unknown swa_strategy, a
 * checkpoint strategy without a positive interval), IO, OUT_OF_MEMORY.
 */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_session_save(const dsv4_session* session, const char* path,
                                                      const dsv4_save_params* params);
/*
 * Restores a session saved by dsv4_session_save for this model; appending to it gives the logits
 * the saved session would have given. The cache keeps the file's storage format (params'
 * kv_format is ignored); the other params apply as in dsv4_session_create (may be NULL).
 * Errors: INVALID_ARGUMENT (NULL), IO (missing file), CORRUPT_FILE (damaged, truncated, or not a
 * session file; the message says which), MODEL_MISMATCH (saved with another model, or with the
 * other numerics mode), UNSUPPORTED (written by a newer dsv4), OUT_OF_RANGE (over max_positions).
 */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_session_load(dsv4_model* model, const char* path,
                                                      const dsv4_session_params* params,
                                                      dsv4_session** out);
/* An independent copy of a session (cache, compressor state, tokens, position): several
 * continuations of one prompt. Free it with dsv4_session_free. Errors: INVALID_ARGUMENT,
 * OUT_OF_MEMORY. */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_session_fork(const dsv4_session* session,
                                                      dsv4_session** out);
/*
 * v0.5. Rewinds the session to its first n_tokens tokens (0 <= n_tokens <= position), for
 * speculative decoding and chat edits: it then continues exactly, bit for bit, as a session that
 * stopped there. The window rings and compressor states are rebuilt by recomputing the last
 * tokens they depend on (about layers times the window). On failure the session is unchanged.
 * Errors: INVALID_ARGUMENT (NULL), OUT_OF_RANGE (n_tokens outside [0, position]), OUT_OF_MEMORY.
 */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_session_truncate(dsv4_session* session, int64_t n_tokens);

/* A prefix store: saved sessions in a directory keyed by the model and their token ids, so a new
 * session starts from the longest saved prefix of its prompt (a chat server across turns). */
typedef struct dsv4_prefix_store dsv4_prefix_store;

/* Opens (creating it if needed) a store directory. Errors: INVALID_ARGUMENT, IO. */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_prefix_store_open(const char* dir,
                                                           dsv4_prefix_store** out);
DSV4_API void dsv4_prefix_store_free(dsv4_prefix_store* store);
/* Saves a session under its model and token ids (replacing an entry for the same ids); as
 * dsv4_session_save. */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_prefix_store_save(const dsv4_prefix_store* store,
                                                           const dsv4_session* session,
                                                           const dsv4_save_params* params);
/* A session restored from the longest saved prefix of `tokens` for `model`, or a fresh session
 * when none matches; dsv4_session_position tells how many of the tokens it already holds.
 * Damaged or foreign entries are skipped. Errors: INVALID_ARGUMENT, OUT_OF_MEMORY. */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_prefix_store_load(const dsv4_prefix_store* store,
                                                           dsv4_model* model, const int32_t* tokens,
                                                           size_t n_tokens,
                                                           const dsv4_session_params* params,
                                                           dsv4_session** out);

/* Thread-independent errors of one session: the message of the last failed call that took this
 * session (any thread), or "" after a success. Unlike dsv4_last_error() it survives a move of the
 * calling code to another OS thread between the failing call and this one (Go, async runtimes).
 * The pointer stays valid until the next call on this session. Returns "" for NULL. */
DSV4_API const char* dsv4_session_last_error(const dsv4_session* session);

/* ---- text: tokenizer ---- */

typedef struct dsv4_tokenizer dsv4_tokenizer;

/* Loads a Hugging Face tokenizer.json (byte-level BPE), from the file or from a directory holding
 * it (with its tokenizer_config.json for BOS/EOS). Errors: IO, CORRUPT_FILE, UNSUPPORTED. A
 * tokenizer is immutable: any number of threads may use one at once. */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_tokenizer_load(const char* path, dsv4_tokenizer** out);
/* The tokenizer that dsv4_model_load found next to the weights (tokenizer.json in the model
 * directory), as a new handle the caller frees. IO if the directory had none. */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_model_tokenizer(const dsv4_model* model,
                                                         dsv4_tokenizer** out);
DSV4_API void dsv4_tokenizer_free(dsv4_tokenizer* tokenizer);

/* One more than the largest token id; BOS and EOS ids (-1 when the tokenizer names none). */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_tokenizer_n_vocab(const dsv4_tokenizer* tokenizer,
                                                           int32_t* out);
DSV4_API DSV4_NODISCARD dsv4_status dsv4_tokenizer_bos(const dsv4_tokenizer* tokenizer,
                                                       int32_t* out);
DSV4_API DSV4_NODISCARD dsv4_status dsv4_tokenizer_eos(const dsv4_tokenizer* tokenizer,
                                                       int32_t* out);

/* Flags of dsv4_tokenize. Without DSV4_TOKENIZE_SPECIAL, text such as "<｜User｜>" is plain text
 * (users cannot inject protocol tokens); with it, added tokens are matched as the reference
 * tokenizer's encode does. */
#define DSV4_TOKENIZE_SPECIAL 1u

/* Encodes `text_len` bytes of UTF-8. *n_ids always receives the number of ids; when it exceeds
 * `capacity` nothing is written and the call returns BUFFER_TOO_SMALL (call again with a larger
 * buffer; `ids` may be NULL with capacity 0 to ask for the size). INVALID_ARGUMENT for text
 * that is not valid UTF-8. */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_tokenize(const dsv4_tokenizer* tokenizer, const char* text,
                                                  size_t text_len, uint32_t flags, int32_t* ids,
                                                  size_t capacity, size_t* n_ids);

/* Flags of dsv4_detokenize. */
#define DSV4_DETOKENIZE_SKIP_SPECIAL 1u

/* Decodes ids to UTF-8 (invalid sequences from byte tokens become U+FFFD). *text_len receives
 * the length without the terminating NUL; `text` needs text_len + 1 bytes, else
 * BUFFER_TOO_SMALL. OUT_OF_RANGE for an id that is not a token. */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_detokenize(const dsv4_tokenizer* tokenizer,
                                                    const int32_t* ids, size_t n_ids,
                                                    uint32_t flags, char* text, size_t capacity,
                                                    size_t* text_len);

/* The raw bytes of one token (possibly part of a UTF-8 character: use dsv4_detokenize or
 * dsv4_decoder for text), NUL-terminated as dsv4_detokenize. */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_token_to_piece(const dsv4_tokenizer* tokenizer, int32_t id,
                                                        char* piece, size_t capacity,
                                                        size_t* piece_len);
/* The id of a token given as stored in tokenizer.json ("Ġthe") or as an added token's content
 * ("<｜User｜>"). OUT_OF_RANGE when there is none. */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_piece_to_token(const dsv4_tokenizer* tokenizer,
                                                        const char* piece, size_t piece_len,
                                                        int32_t* id);

/* A streaming decoder: feed ids as they are generated, get whole UTF-8 characters back (bytes of
 * a character that a later token completes are held back). */
typedef struct dsv4_decoder dsv4_decoder;
DSV4_API DSV4_NODISCARD dsv4_status dsv4_decoder_create(const dsv4_tokenizer* tokenizer,
                                                        dsv4_decoder** out);
DSV4_API void dsv4_decoder_free(dsv4_decoder* decoder);
/* The text `id` completes (often empty), NUL-terminated as dsv4_detokenize. On BUFFER_TOO_SMALL
 * nothing is consumed: call again with `id` and a larger buffer. */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_decoder_push(dsv4_decoder* decoder, int32_t id, char* text,
                                                      size_t capacity, size_t* text_len);

/* ---- text: the V4 chat format ---- */

typedef struct dsv4_chat_params {
  size_t struct_size;           /* sizeof(dsv4_chat_params) as compiled by the caller */
  int32_t thinking;             /* 1: thinking mode (the prompt ends with <think>); 0: chat */
  int32_t drop_thinking;        /* 1 (default): earlier turns lose their reasoning */
  int32_t add_bos;              /* 1 (default): start with BOS when there is no context */
  const char* reasoning_effort; /* NULL, "low", "high" or "max" */
  const char* variant;          /* NULL or "v4" (initial release), "v4-0731" */
  const char* context_json;     /* NULL or a JSON array of the messages already in the cache */
} dsv4_chat_params;

DSV4_API dsv4_chat_params dsv4_chat_default_params(void);

/* Renders a JSON array of OpenAI-style messages (system, developer, user, assistant with
 * reasoning_content and tool_calls, tool, latest_reminder) as the V4 prompt text, NUL-terminated
 * as dsv4_detokenize. INVALID_ARGUMENT for malformed messages, with the reason. */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_chat_render(const char* messages_json,
                                                     const dsv4_chat_params* params, char* text,
                                                     size_t capacity, size_t* text_len);
/* The same prompt as token ids, sized as dsv4_tokenize. Protocol tokens are the encoder's own:
 * text inside messages never becomes a protocol token. */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_chat_render_tokens(const dsv4_tokenizer* tokenizer,
                                                            const char* messages_json,
                                                            const dsv4_chat_params* params,
                                                            int32_t* ids, size_t capacity,
                                                            size_t* n_ids);
/* Parses one generated assistant turn (text up to and including EOS) into a JSON object
 * {"role", "content", "reasoning_content", "tool_calls"}, NUL-terminated as dsv4_detokenize.
 * INVALID_ARGUMENT with the reason when the text breaks the format (truncated, no EOS, malformed
 * tool calls). */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_chat_parse(const char* text, size_t text_len,
                                                    int32_t thinking, char* json, size_t capacity,
                                                    size_t* json_len);

/* ---- sampling ---- */

typedef struct dsv4_sampler dsv4_sampler;

typedef struct dsv4_sampler_params {
  size_t struct_size;         /* sizeof(dsv4_sampler_params) as compiled by the caller */
  float temperature;          /* 0: greedy; default 1 */
  int32_t top_k;              /* 0: off */
  float top_p;                /* 1: off */
  float min_p;                /* 0: off */
  float repetition_penalty;   /* 1: off */
  float presence_penalty;     /* 0: off */
  float frequency_penalty;    /* 0: off */
  int32_t penalty_last_n;     /* accepted tokens the penalties look at; -1: all; default 64 */
  uint64_t seed;              /* same seed, same tokens, on every platform */
  const int32_t* stop_tokens; /* copied at creation */
  size_t n_stop_tokens;
  const char* const* stop_strings; /* NUL-terminated UTF-8, copied; need a tokenizer */
  size_t n_stop_strings;
  const int32_t* logit_bias_tokens; /* n_logit_bias ids and the bias added to each */
  const float* logit_bias_values;
  size_t n_logit_bias;
} dsv4_sampler_params;

DSV4_API dsv4_sampler_params dsv4_sampler_default_params(void);

/* params may be NULL (defaults); tokenizer may be NULL unless stop strings are given (it is
 * shared, not copied: keep it alive as long as the sampler). INVALID_ARGUMENT names a bad
 * parameter. A sampler belongs to one generation at a time (not thread-safe). */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_sampler_create(const dsv4_sampler_params* params,
                                                        const dsv4_tokenizer* tokenizer,
                                                        dsv4_sampler** out);
DSV4_API void dsv4_sampler_free(dsv4_sampler* sampler);
/* Draws the next token from `n_vocab` logits. INVALID_ARGUMENT for a NaN logit. */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_sampler_sample(dsv4_sampler* sampler, const float* logits,
                                                        size_t n_vocab, int32_t* token);
/* Records a token (prompt or generated) for the penalties; *stop (may be NULL) becomes 1 when
 * it is a stop token or the generated text now contains a stop string. */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_sampler_accept(dsv4_sampler* sampler, int32_t token,
                                                        int32_t* stop);
/* Forgets the accepted tokens and restarts the seeded generator. */
DSV4_API DSV4_NODISCARD dsv4_status dsv4_sampler_reset(dsv4_sampler* sampler);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* DSV4_H */
