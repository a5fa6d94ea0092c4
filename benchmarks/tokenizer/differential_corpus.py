#!/usr/bin/env python3
"""Random strings from hard character classes for differential.sh; writes texts.jsonl."""
import json, random
random.seed(7)
pools = [
  " \t\n\r\x0b\x0c\x85\xa0\u1680\u2000\u2005\u200a\u2028\u2029\u202f\u205f\u3000\ufeff\u200b",
  "abcXYZ", "éèçñü", "e\u0301a\u0308", "0123456789", "²³½¼Ⅻ①１٣߀", "一二三龥龦㐀𠀀", "あいうカタカナｱｲ", "한국어글",
  "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", "«»—–…‘’“”•€£¥©®™°±×÷", "😀🌧️👍🏽👨‍👩‍👧", "αβγΔΩ", "абвЖЯ", "עבריתعربي",
  "\u0300\u0301\u0302", "<｜User｜><think></think>｜DSML｜<｜/table>｜", "\x00\x01\x1f\x7f",
]
out = []
for n in range(3000):
    k = random.randint(1, 40)
    s = "".join(random.choice(random.choice(pools)) for _ in range(k))
    out.append(s)
# Longer mixed lines
for n in range(300):
    out.append(" ".join("".join(random.choice(random.choice(pools)) for _ in range(random.randint(1, 8))) for _ in range(30)))
with open("texts.jsonl", "w") as f:
    for s in out: f.write(json.dumps(s, ensure_ascii=False) + "\n")
