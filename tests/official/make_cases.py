#!/usr/bin/env python3
"""Random cases for dsv4's official-numerics operators, with the answers of the official_ref
emulator (../shared/tools/official_ref, numpy), written as one safetensors file that
tests/official/test_official_cross.cpp reads. Shapes cover partial blocks (K not a multiple of 128
or 32, nope widths below 64, c not a power of two).
usage: make_cases.py OFFICIAL_REF_DIR OUT.safetensors"""
import json
import struct
import sys

import numpy as np

sys.path.insert(0, sys.argv[1])
import numerics as NX  # noqa: E402

F32 = np.float32
rng = np.random.default_rng(2026)
tensors = {}


def put(name, array):
    tensors[name] = np.ascontiguousarray(array)


def bf16_random(shape, scale=1.0):
    return NX.bf16((rng.standard_normal(shape) * scale).astype(F32))


# KV fake-quantisation of main entries (act_quant inplace, block 64, rope dims untouched) and of
# indexer keys (Hadamard + fp4_act_quant inplace, block 32).
for case, (d, rope) in enumerate([(512, 64), (32, 8), (100, 16)]):
    x = bf16_random((20, d), 3.0)
    nope = NX.act_quant_inplace(x[:, : d - rope], 64)
    put(f"kv{case}.in", x)
    put(f"kv{case}.out", np.concatenate([nope, x[:, d - rope:]], axis=1))
for case, c in enumerate([128, 16, 24]):
    x = bf16_random((20, c), 2.0)
    rotated = NX.hadamard_fht(x, F32(c ** -0.5))
    put(f"idx{case}.in", x)
    put(f"idx{case}.out", NX.fp4_act_quant_inplace(rotated, 32))

# FP8 and FP4 GEMMs (activations bf16; weights as codes and power-of-two scales).
e4m3_codes = np.array([b for b in range(256) if (b & 0x7F) != 0x7F], dtype=np.uint8)
for case, (m, n, k) in enumerate([(3, 5, 128), (2, 130, 300), (4, 7, 64)]):
    x = bf16_random((m, k))
    codes = rng.choice(e4m3_codes, size=(n, k)).astype(np.uint8)
    scales = rng.integers(110, 125, size=(-(-n // 128), -(-k // 128))).astype(np.uint8)
    y = NX.fp8_gemm(x, NX.E4M3_TABLE[codes], NX.e8m0_decode(scales))
    put(f"fp8_{case}.x", x)
    put(f"fp8_{case}.codes", codes)
    put(f"fp8_{case}.scales", scales)
    put(f"fp8_{case}.y", NX.bf16(y))
for case, (m, n, k) in enumerate([(3, 5, 256), (2, 9, 96), (5, 4, 64)]):
    x = bf16_random((m, k))
    nibbles = rng.integers(0, 16, size=(n, k)).astype(np.uint8)
    packed = (nibbles[:, 0::2] | (nibbles[:, 1::2] << 4)).astype(np.uint8)
    scales = rng.integers(118, 130, size=(n, -(-k // 32))).astype(np.uint8)
    y = NX.fp4_gemm(x, NX.FP4_TABLE[nibbles], NX.e8m0_decode(scales))
    put(f"fp4_{case}.x", x)
    put(f"fp4_{case}.codes", packed)
    put(f"fp4_{case}.scales", scales)
    put(f"fp4_{case}.y", NX.bf16(y))

# Sinkhorn (4 streams, 20 iterations) and sparse attention (bf16 q and keys, -1 slots).
for case in range(3):
    hc = 4
    mixes = (rng.standard_normal((6, (2 + hc) * hc)) * 2).astype(F32)
    scale = (rng.standard_normal(3) * 0.5 + 1).astype(F32)
    base = (rng.standard_normal((2 + hc) * hc) * 0.3).astype(F32)
    pre, post, comb = NX.hc_split_sinkhorn(mixes, scale, base, hc, 20, 1e-6)
    for name, v in [("mixes", mixes), ("scale", scale), ("base", base), ("pre", pre), ("post", post),
                    ("comb", comb)]:
        put(f"hc{case}.{name}", v)
for case, (h, d, n) in enumerate([(4, 64, 150), (2, 32, 10), (3, 48, 64)]):
    q = bf16_random((1, h, d))
    kv = bf16_random((n, d))
    idxs = np.arange(n)[None, :].copy()
    idxs[0, rng.choice(n, size=n // 5, replace=False)] = -1
    sinks = rng.standard_normal(h).astype(F32)
    out = NX.sparse_attn(q, kv, sinks, idxs, F32(d ** -0.5))
    for name, v in [("q", q[0]), ("kv", kv), ("idxs", idxs[0].astype(np.int32)), ("sinks", sinks),
                    ("out", out[0])]:
        put(f"attn{case}.{name}", v)

dtypes = {np.dtype(np.float32): "F32", np.dtype(np.uint8): "U8", np.dtype(np.int32): "I32"}
header, offset, blobs = {}, 0, []
for name, a in tensors.items():
    raw = a.tobytes()
    header[name] = {"dtype": dtypes[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
    offset += len(raw)
    blobs.append(raw)
meta = json.dumps(header).encode()
meta += b" " * (-len(meta) % 8)
with open(sys.argv[2], "wb") as f:
    f.write(struct.pack("<Q", len(meta)) + meta + b"".join(blobs))
print(f"{sys.argv[2]}: {len(tensors)} tensors")
