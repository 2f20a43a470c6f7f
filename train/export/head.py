"""The student's head as ONNX (``head.onnx`` of a bundle): features [B, W, 512], mask [B, W], text [L, M, 512] ->
binary [B, L, W], classes [B, L, W, M]; the export and the INT8 evaluation (``cplvad eval --int8``) share it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch

from train.export.clip import OPSET, quiet_exporter
from train.models.student import Student


def export_head(student: Student, text: np.ndarray, out: str | Path, *, opset: int = OPSET,
                metadata: dict[str, str] | None = None) -> Path:
    """Write the student as ONNX: features [B, W, 512], mask [B, W] bool, text [L, M, 512] -> binary, classes."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    W = student.config.window
    example = (torch.zeros(2, W, student.config.feature_dim), torch.ones(2, W, dtype=torch.bool),
               torch.from_numpy(text))
    batch, classes = torch.export.Dim("batch", min=1, max=1024), torch.export.Dim("classes", min=2, max=1024)
    with quiet_exporter():
        torch.onnx.export(student.eval(), example, str(out), input_names=["features", "mask", "text"],
                          output_names=["binary", "classes"], opset_version=opset, dynamo=True,
                          dynamic_shapes={"features": {0: batch}, "mask": {0: batch}, "text": {1: classes}},
                          external_data=False)
    proto = onnx.load(str(out))
    proto.ir_version = onnx.helper.find_min_ir_version_for(list(proto.opset_import))
    onnx.helper.set_model_props(proto, {"cplvad.model": "head", "cplvad.window": str(W),
                                        "cplvad.levels": str(student.config.num_levels), **(metadata or {})})
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out))
    return out
