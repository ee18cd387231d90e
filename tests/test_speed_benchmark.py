"""The speed benchmark's FLOP count (benchmarks/speed.py) includes attention on the CPU."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.speed import _cpu_attention_flops


def test_cpu_attention_is_counted_at_two_matmuls_per_key():
    b, h, queries, keys, d = 2, 3, 16, 40, 8
    q, k, v = torch.randn(b, h, queries, d), torch.randn(b, h, keys, d), torch.randn(b, h, keys, d)
    mask = torch.zeros(queries, keys)
    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counted:
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    # q @ k^T and softmax(.) @ v: 2 FLOPs per multiply-add each
    assert counted.get_total_flops() == 2 * 2 * b * h * queries * keys * d
