"""The speed benchmark's FLOP count (benchmarks/speed.py) includes attention on the CPU."""
from __future__ import annotations

import pytest
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


def test_step_profile_sums_time_by_kind_and_ranks_kernels():
    from benchmarks.step_profile import kind_of, summarise

    assert kind_of("fmha_cutlassF_bf16_aligned_64x64_rf_sm80") == "attention"
    assert kind_of("sm90_xmma_gemm_bf16bf16_bf16f32") == "matmul"
    assert kind_of("aten::addmm") == "matmul"
    assert kind_of("void at::native::vectorized_elementwise_kernel<4, GeluCUDAKernelImpl>") == "other"
    events = [("aten::addmm", 30.0, 2), ("aten::_scaled_dot_product_flash_attention_for_cpu", 50.0, 1),
              ("aten::gelu", 20.0, 4)]
    s = summarise(events, top=2)
    assert s["total_us"] == 100.0
    assert s["share"] == {"attention": 0.5, "matmul": 0.3, "other": 0.2}
    assert [k["name"] for k in s["top"]] == ["aten::_scaled_dot_product_flash_attention_for_cpu", "aten::addmm"]


def test_step_profile_refuses_an_empty_profile():
    from benchmarks.step_profile import summarise

    with pytest.raises(ValueError, match="no timed kernels"):
        summarise([])
