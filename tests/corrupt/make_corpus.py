#!/usr/bin/env python3
"""Writes the corrupt-input corpus: malformed safetensors files and config.json files, each with
the status the reader must return, listed in MANIFEST (file<TAB>status). Run from this folder;
the outputs are committed so the tests need no Python."""
import json, struct, os

def st(header, data=b"", raw_header=None, length=None):
    h = raw_header if raw_header is not None else json.dumps(header).encode()
    n = len(h) if length is None else length
    return struct.pack("<Q", n) + h + data

def t(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}

good = {"a": t("F32", [2], 0, 8)}
cases = {
    "empty.safetensors": (b"", "CORRUPT_FILE"),
    "short_length.safetensors": (b"\x01\x02\x03", "CORRUPT_FILE"),
    "length_past_end.safetensors": (st(good, b"\0" * 8, length=10_000), "CORRUPT_FILE"),
    "length_huge.safetensors": (struct.pack("<Q", 2**63) + b"{}", "CORRUPT_FILE"),
    "truncated_data.safetensors": (st(good, b"\0" * 4), "CORRUPT_FILE"),
    "not_json.safetensors": (st(None, b"", raw_header=b"{not json"), "CORRUPT_FILE"),
    "not_object.safetensors": (st(None, b"", raw_header=b"[1,2]"), "CORRUPT_FILE"),
    "deep_nesting.safetensors": (st(None, b"", raw_header=b"{\"a\":" + b"[" * 5000 + b"]" * 5000 + b"}"), "CORRUPT_FILE"),
    "unknown_dtype.safetensors": (st({"a": t("F12", [2], 0, 8)}, b"\0" * 8), "CORRUPT_FILE"),
    "negative_dim.safetensors": (st({"a": t("F32", [-2], 0, 8)}, b"\0" * 8), "CORRUPT_FILE"),
    "float_dim.safetensors": (st({"a": t("F32", [2.5], 0, 8)}, b"\0" * 8), "CORRUPT_FILE"),
    "shape_size_mismatch.safetensors": (st({"a": t("F32", [3], 0, 8)}, b"\0" * 12), "CORRUPT_FILE"),
    "offsets_reversed.safetensors": (st({"a": t("F32", [0], 8, 0)}, b"\0" * 8), "CORRUPT_FILE"),
    "offsets_out_of_bounds.safetensors": (st({"a": t("F32", [2], 8, 16)}, b"\0" * 8), "CORRUPT_FILE"),
    "overlap.safetensors": (st({"a": t("F32", [2], 0, 8), "b": t("F32", [2], 4, 12)}, b"\0" * 12), "CORRUPT_FILE"),
    # A [0, 100) and B [50, 90) overlap with an empty tensor sorted between them: a check of
    # neighbours only misses it.
    "overlap_across_empty.safetensors": (st({"a": t("U8", [100], 0, 100), "e": t("U8", [0], 40, 40), "b": t("U8", [40], 50, 90)}, b"\0" * 100), "CORRUPT_FILE"),
    "missing_offsets.safetensors": (st({"a": {"dtype": "F32", "shape": [2]}}, b"\0" * 8), "CORRUPT_FILE"),
    "offsets_three.safetensors": (st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4, 8]}}, b"\0" * 8), "CORRUPT_FILE"),
    "dim_overflow.safetensors": (st({"a": t("F32", [2**40, 2**40], 0, 8)}, b"\0" * 8), "CORRUPT_FILE"),
    "odd_fp4.safetensors": (st({"a": t("F4", [3], 0, 2)}, b"\0" * 2), "CORRUPT_FILE"),
    "duplicate_name.safetensors": (st(None, b"\0" * 8, raw_header=b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}'), "CORRUPT_FILE"),
    "metadata_not_strings.safetensors": (st({"__metadata__": {"x": 1}}), "CORRUPT_FILE"),
    "entry_not_object.safetensors": (st({"a": 5}), "CORRUPT_FILE"),
    "extra_field.safetensors": (st({"a": dict(t("F32", [2], 0, 8), extra=1)}, b"\0" * 8), "CORRUPT_FILE"),
    "invalid_utf8.safetensors": (st(None, b"", raw_header=b'{"\xff\xfe":1}'), "CORRUPT_FILE"),
}
os.makedirs("safetensors", exist_ok=True)
manifest = []
for name, (blob, status) in sorted(cases.items()):
    open(os.path.join("safetensors", name), "wb").write(blob)
    manifest.append(f"safetensors/{name}\t{status}")

base = {
    "vocab_size": 256, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
    "head_dim": 32, "qk_rope_head_dim": 8, "q_lora_rank": 32, "o_lora_rank": 16, "o_groups": 2,
    "sliding_window": 16, "compress_ratios": [4, 128], "index_n_heads": 8, "index_head_dim": 16,
    "index_topk": 8, "n_routed_experts": 8, "num_experts_per_tok": 2, "n_shared_experts": 1,
    "moe_intermediate_size": 32, "scoring_func": "sqrtsoftplus", "hc_mult": 4,
    "rope_scaling": {"type": "yarn", "factor": 16.0, "original_max_position_embeddings": 65536,
                     "beta_fast": 32, "beta_slow": 1},
}
def cfg(**changes):
    c = json.loads(json.dumps(base))
    for k, v in changes.items():
        if v is None: c.pop(k, None)
        else: c[k] = v
    return json.dumps(c).encode()

configs = {
    "valid.json": (cfg(), "OK"),
    "not_json.json": (b"{\"vocab_size\": ", "CORRUPT_FILE"),
    "not_object.json": (b"[]", "CORRUPT_FILE"),
    "deep_nesting.json": (b"[" * 10000 + b"]" * 10000, "CORRUPT_FILE"),
    "missing_hidden_size.json": (cfg(hidden_size=None), "INVALID_CONFIG"),
    "zero_heads.json": (cfg(num_attention_heads=0), "INVALID_CONFIG"),
    "negative_vocab.json": (cfg(vocab_size=-5), "INVALID_CONFIG"),
    "string_dim.json": (cfg(head_dim="32"), "INVALID_CONFIG"),
    "fractional_dim.json": (cfg(head_dim=32.5), "INVALID_CONFIG"),
    "heads_not_divisible_by_groups.json": (cfg(o_groups=3), "INVALID_CONFIG"),
    "rope_dim_odd.json": (cfg(qk_rope_head_dim=7), "INVALID_CONFIG"),
    "rope_dim_too_big.json": (cfg(qk_rope_head_dim=64), "INVALID_CONFIG"),
    "compress_ratios_short.json": (cfg(compress_ratios=[4]), "INVALID_CONFIG"),
    "compress_ratio_negative.json": (cfg(compress_ratios=[4, -1]), "INVALID_CONFIG"),
    "unknown_scoring.json": (cfg(scoring_func="relu"), "INVALID_CONFIG"),
    "topk_above_experts.json": (cfg(num_experts_per_tok=9), "INVALID_CONFIG"),
    "hash_layers_above_layers.json": (cfg(num_hash_layers=3), "INVALID_CONFIG"),
    "csa_without_indexer.json": (cfg(index_topk=None), "INVALID_CONFIG"),
    "kv_heads_not_one.json": (cfg(num_key_value_heads=2), "INVALID_CONFIG"),
    "eps_zero.json": (cfg(rms_norm_eps=0), "INVALID_CONFIG"),
    "rope_scaling_unknown.json": (cfg(rope_scaling={"type": "ntk", "factor": 2}), "INVALID_CONFIG"),
    "rope_scaling_factor_small.json": (cfg(rope_scaling={"type": "yarn", "factor": 0.5, "original_max_position_embeddings": 10}), "INVALID_CONFIG"),
    "huge_dims.json": (cfg(hidden_size=2**40), "INVALID_CONFIG"),
    "compress_ratios_not_array.json": (cfg(compress_ratios=4), "INVALID_CONFIG"),
    "unknown_expert_dtype.json": (cfg(expert_dtype="int3"), "INVALID_CONFIG"),
}
os.makedirs("config", exist_ok=True)
for name, (blob, status) in sorted(configs.items()):
    open(os.path.join("config", name), "wb").write(blob)
    manifest.append(f"config/{name}\t{status}")
open("MANIFEST", "w").write("\n".join(manifest) + "\n")

# Whole model folders for the C ABI test: a config that fails validation, and a checkpoint cut short.
golden = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../shared/golden/tiny-a")
if os.path.isdir(golden):
    c = json.load(open(os.path.join(golden, "config.json")))
    os.makedirs("model_bad_config", exist_ok=True)
    json.dump(dict(c, o_groups=3), open("model_bad_config/config.json", "w"), indent=1)
    open("model_bad_config/model.safetensors", "wb").write(b"")
    os.makedirs("model_truncated", exist_ok=True)
    json.dump(c, open("model_truncated/config.json", "w"), indent=1)
    blob = open(os.path.join(golden, "model.safetensors"), "rb").read()
    open("model_truncated/model.safetensors", "wb").write(blob[:40000])

# Sizes that would make the loader allocate absurd amounts before reading a tensor.
extra = {
    "experts_absurd.json": (cfg(n_routed_experts=2**30), "INVALID_CONFIG"),
    "layers_absurd.json": (cfg(num_hidden_layers=100000, compress_ratios=[0] * 100000), "INVALID_CONFIG"),
    "compress_ratio_absurd.json": (cfg(compress_ratios=[4, 2**30]), "INVALID_CONFIG"),
    # Found by fuzz_config: 1.1M experts made checkpoint_schema() allocate gigabytes.
    "fuzz_oom_many_experts.json": (b'{"vocab_size": 1, "hidden_size": 64, "num_hidden_layers": 2, "num": 8, "q_lora_rank": 32, "o_lora_rank": 16, "o_groups": 2,"sliding_window": 1, "n_routed_experts": 1111334, "num_experts_per_tok": 21, "moe_intermediate_size": 32, "": 2, "num_attention_heads": 4, "head_dim": 32, "qk_rope_head_dim": 6, "o_groupww": 1, "compress_ratios": [0, 128],"":  {"tpl": 0}}', "INVALID_CONFIG"),
}
for name, (blob, status) in sorted(extra.items()):
    open(os.path.join("config", name), "wb").write(blob)
    manifest.append(f"config/{name}\t{status}")
open("MANIFEST", "w").write("\n".join(manifest) + "\n")
