"""The batch-invariant products' plumbing in any dtype (test_batch_invariance.py checks
their bits on the machine at hand): padding small products and cutting the padding off
keeps shapes and values; `probs_times_values` is `p @ v` up to rounding."""

from __future__ import annotations

import pytest
import torch

from magpie.engines import invariant


@pytest.mark.parametrize("shape", [(2, 3, 24), (1, 1, 24), (1, 15, 24), (5, 24), (24,), (2, 0, 24)])
def test_a_hooked_linear_layer_keeps_its_shapes_and_values(shape):
    torch.manual_seed(0)
    layer = torch.nn.Sequential(torch.nn.Linear(24, 7))
    x = torch.randn(*shape)
    want = torch.nn.functional.linear(x, layer[0].weight, layer[0].bias)
    layer[0].register_forward_pre_hook(invariant._pad_rows)
    layer[0].register_forward_hook(invariant._unpad_rows)
    layer[0]._magpie_rows = None
    got = layer(x)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize(("rows", "cols"), [(1, 1), (3, 100), (40, 5), (20, 20)])
def test_padded_matmul_is_matmul(rows, cols):
    torch.manual_seed(1)
    a, b = torch.randn(2, 3, rows, 64), torch.randn(2, 3, 64, cols)
    got = invariant.padded_matmul(a, b)
    assert got.shape == (2, 3, rows, cols) and got.is_contiguous()
    torch.testing.assert_close(got, a.double().matmul(b.double()).float())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("keys", [5, 130, 300, 1100])
def test_probs_times_values_is_p_at_v(dtype, keys):
    torch.manual_seed(2)
    probs = torch.softmax(torch.randn(2, 3, 9, keys) * 3, dim=-1)
    values = torch.randn(2, 3, keys, 64)
    got = invariant.probs_times_values(probs.to(dtype), values.to(dtype))
    assert got.shape == (2, 3, 9, 64) and got.dtype == dtype and got.is_contiguous()
    want = probs.double() @ values.double()  # float64 reference
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(got.double(), want, atol=tol, rtol=tol)
