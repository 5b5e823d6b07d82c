"""``jacnet export``: a model file as an ONNX graph (the whole model, its encoding too)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ..data import FeatureEncoder
from .common import Debug, app, load_model, out


@app.command()
def export(
    model: Annotated[Path, typer.Argument(help="A model file (model.safetensors).")],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="The ONNX file to write; default: MODEL with the suffix .onnx.",
        show_default=False)] = None,
    dtype: Annotated[str, typer.Option(
        "--dtype", help="float64 (the model's own precision) or float32.")] = "float64",
    with_input_jacobian: Annotated[bool, typer.Option(
        "--with-input-jacobian", help="Add the output input_jacobian: dy/dx per row, in the "
        "data's units.")] = False,
    debug: Debug = False,
) -> None:
    """Export a model to ONNX: standardisation, layers, labels, text columns included."""
    from ..export import describe_onnx, export_onnx

    est, doc = load_model(model)
    spec = ((doc.get("extra") or {}).get("data") or {}).get("features")
    encoder = None if spec is None else FeatureEncoder.from_dict(spec)
    target = output if output is not None else model.with_suffix(".onnx")
    export_onnx(est, target, dtype=dtype, with_input_jacobian=with_input_jacobian,
                encoder=encoder)
    info = describe_onnx(target)
    names = ", ".join(name for name, _, _ in info["outputs"])
    out.print(f"wrote {escape(str(target))}: {len(info['inputs'])} input(s), outputs {names}, "
              f"{dtype}, opset {info['opsets']['ai.onnx']}")
