"""The transformer and LSTM workloads' networks, verified whole: every gradient of the composition
against finite differences and against torch.autograd on the torch twin, in float64."""

import torch

import framework as fw
from benchmarks.workloads import WORKLOADS, SequenceClassifier, TorchSequenceClassifier, available_workloads
from verification import assert_gradients_close
from verification.twins import twin_of

F64 = torch.float64


def test_the_transformer_and_lstm_workloads_exist_at_every_size():
    names = {w.name for w in available_workloads()}
    assert {"TransformerBlock", "LSTMSequence"} <= names
    sizes = {w.name: set(w.sizes) for w in WORKLOADS}
    assert sizes["TransformerBlock"] == sizes["LSTMSequence"] == {"seed", "medium", "large"}
    large = next(w for w in WORKLOADS if w.name == "TransformerBlock").sizes["large"]
    assert (large["batch"], large["length"], large["width"], large["heads"]) == (32, 128, 256, 4)


def test_the_transformer_block_is_verified_against_torchs_encoder_layer():
    block = fw.TransformerEncoderLayer(8, 2, 16, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
    block.to(dtype=F64)
    twin = twin_of(block)
    assert isinstance(twin, torch.nn.TransformerEncoderLayer) and twin.norm_first
    assert_gradients_close(block, torch.randn(2, 5, 8, dtype=F64), reference=twin)


def test_the_lstm_sequence_model_is_verified_against_torchs_lstm_and_linear():
    torch.manual_seed(0)
    model = SequenceClassifier(3, 4, 2, num_layers=2)
    model.to(dtype=F64)
    assert_gradients_close(model, torch.randn(2, 5, 3, dtype=F64), reference=TorchSequenceClassifier(3, 4, 2, 2))
