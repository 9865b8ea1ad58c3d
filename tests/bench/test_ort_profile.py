"""``repvit.bench.ort_profile``: convolutions classified and their MACs counted as PyTorch's FLOP counter counts them,
and an ONNX Runtime profile grouped so that every node and every millisecond is accounted for."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from repvit.bench.ort_profile import conv_kinds, group_nodes, groups_table, node_minima, session_graph
from repvit.deploy.onnx_export import export_onnx_bytes

pytest.importorskip("onnxruntime")


class _Convs(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, stride=2, padding=1)  # k x k, 16 x 16 out
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)  # depthwise
        self.pw = nn.Conv2d(16, 32, 1)  # 1x1
        self.down = nn.Conv2d(32, 32, 1, stride=2)  # 1x1, 8 x 8 out

    def forward(self, x):
        return self.down(torch.relu(self.pw(torch.nn.functional.gelu(self.dw(self.stem(x))))))


@pytest.fixture(scope="module")
def graph():
    torch.manual_seed(0)
    model, x = _Convs().eval(), torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        data = export_onnx_bytes(model, x, dynamic_batch=False)
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return data, x.numpy(), counter.get_total_flops() // 2


def test_conv_kinds_and_macs_follow_pytorchs_flop_counter(graph):
    data, _, macs = graph
    kinds = conv_kinds(data)
    assert sorted(k for k, _, _ in kinds.values()) == ["Conv 1x1", "Conv 1x1", "Conv depthwise", "Conv k x k"]
    assert sum(m for _, m, _ in kinds.values()) == macs
    assert sorted(size for _, _, size in kinds.values()) == [(8, 8), (16, 16), (16, 16), (16, 16)]


def test_profile_groups_every_node_with_rates(graph):
    data, x, _ = graph
    nodes = node_minima(session_graph(data), [x], threads=1, runs=3)
    assert nodes and all(ms >= 0 for _, ms in nodes.values())
    groups = group_nodes(nodes, conv_kinds(data), by_size=True)
    assert sum(g["nodes"] for g in groups.values()) == len(nodes)
    assert sum(g["ms"] for g in groups.values()) == pytest.approx(sum(ms for _, ms in nodes.values()))
    assert sum(g["share"] for g in groups.values()) == pytest.approx(1.0)
    assert list(groups) == sorted(groups, key=lambda k: -groups[k]["ms"])
    sized = [k for k in groups if "@" in k]
    assert sized and all(k.startswith("Conv ") for k in sized)
    assert "Conv 1x1 @8x8" in groups  # the strided 1x1 is told apart from the one at 16 x 16
    for k in sized:  # every matched convolution has its MACs, so a rate
        assert groups[k]["macs"] > 0 and (groups[k]["gflops"] is None) == (groups[k]["ms"] == 0)
    plain = group_nodes(nodes, conv_kinds(data))
    assert not any("@" in k for k in plain) and sum(g["nodes"] for g in plain.values()) == len(nodes)


def test_groups_table_has_a_row_per_group_and_the_total(graph):
    data, x, _ = graph
    groups = group_nodes(node_minima(session_graph(data), [x], threads=1, runs=2), conv_kinds(data))
    lines = groups_table(groups, sgemm_gflops=100.0)
    assert len(lines) == len(groups) + 3 and lines[-1].startswith("| total | " + str(sum(g["nodes"] for g in
                                                                                       groups.values())))
    assert all(line.count("|") == lines[0].count("|") for line in lines[2:])  # every row has every column
    assert all("%" in line.split("|")[-2] for line in lines[2:-1] if line.startswith("| Conv 1x1"))
    assert lines[0].count("|") == groups_table(groups)[0].count("|") + 1
