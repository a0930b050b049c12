"""The parameter list of every kernel, read from the .slang sources and slangc's CUDA output.

The list (names, order, types) comes from two places checked against each other: the
``[CudaKernel] void name(...)`` declarations in the .slang sources (names and tensor element
types) and the ``__global__ void name(...)`` signatures in the emitted CUDA (order and lowered
types; slangc suffixes every parameter name with ``_N``). slangc's ``-reflection-json`` cannot
be used: it lists no parameters for ``[CudaKernel]`` functions, which are not shader entry
points, and declaring them as compute entry points with ``-entry`` fails ("this target doesn't
support this user-defined varying parameter").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "Param",
    "parse_slang_kernels",
    "parse_cuda_kernels",
    "kernel_table",
    "table_to_json",
    "table_from_json",
]

# Slang element type of a TensorView<T> -> torch dtype attribute name.
ELEMENT_DTYPES = {
    "float": "float32",
    "double": "float64",
    "half": "float16",
    "int": "int32",
    "int32_t": "int32",
    "uint": "uint32",
    "uint32_t": "uint32",
    "int64_t": "int64",
    "uint64_t": "uint64",
    "int16_t": "int16",
    "uint16_t": "uint16",
    "int8_t": "int8",
    "uint8_t": "uint8",
    "bool": "bool",
}
# Scalar parameter types: Slang spelling -> kind.
SCALAR_KINDS = {
    "int": "int",
    "int32_t": "int",
    "uint": "uint",
    "uint32_t": "uint",
    "float": "float",
    "bool": "bool",
}
# Lowered CUDA parameter types (from slangc -target cuda) -> kind: the scalars keep their names.
CUDA_KINDS = {"TensorView": "tensor", **SCALAR_KINDS}
PARAM_HELP = "kernel parameters may only be TensorView<T>, DiffTensorView, int, uint, float or bool"


@dataclass(frozen=True)
class Param:
    """One kernel parameter.

    kind: "tensor" (TensorView<T>), "diff" (DiffTensorView), "int", "uint", "float" or "bool".
    dtype: torch dtype name of the tensor elements ("float32", "int64", ...); None for scalars.
    """

    name: str
    kind: str
    dtype: str | None = None


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


# [CudaKernel], then any further attributes and modifiers (public, internal, static, ...) in any
# order, then `void name(params)`.
_SLANG_KERNEL_RE = re.compile(
    r"\[\s*CudaKernel\s*\]\s*"
    r"(?:(?:\[[^\]]*\]|\b(?:public|internal|private|static|export|inline)\b)\s*)*"
    r"void\s+(\w+)\s*\(([^)]*)\)"
)
_SLANG_PARAM_RE = re.compile(
    r"^(?:(?:in|no_diff|uniform|const)\s+)*([A-Za-z_]\w*)\s*(?:<\s*([^<>]*?)\s*>)?\s+([A-Za-z_]\w*)$"
)
_CUDA_KERNEL_RE = re.compile(r"__global__\s+void\s+(\w+)\s*\(([^)]*)\)")


def _slang_param(kernel: str, text: str) -> Param:
    match = _SLANG_PARAM_RE.match(" ".join(text.split()))
    if match is None:
        raise RuntimeError(f"kernel {kernel}: cannot read parameter {text.strip()!r}; {PARAM_HELP}")
    type_name, generic, name = match.groups()
    first_arg = generic.split(",")[0].strip() if generic else None
    if type_name == "TensorView" and first_arg in ELEMENT_DTYPES:
        return Param(name, "tensor", ELEMENT_DTYPES[first_arg])
    if type_name == "DiffTensorView" and first_arg in (None, "float", "double", "half"):
        return Param(name, "diff", ELEMENT_DTYPES[first_arg or "float"])
    if type_name in SCALAR_KINDS and generic is None:
        return Param(name, SCALAR_KINDS[type_name])
    raise RuntimeError(f"kernel {kernel}: parameter {name} has type {type_name}; {PARAM_HELP}")


def parse_slang_kernels(sources: Mapping[str, str]) -> dict[str, list[Param]]:
    """``{kernel name: parameters}`` of every ``[CudaKernel] void name(...)`` in the sources."""
    kernels: dict[str, list[Param]] = {}
    for text in sources.values():
        for match in _SLANG_KERNEL_RE.finditer(_strip_comments(text)):
            name, params = match.groups()
            parts = [p for p in params.split(",") if p.strip()]
            kernels[name] = [_slang_param(name, p) for p in parts]
    return kernels


def parse_cuda_kernels(cuda_source: str) -> dict[str, list[tuple[str, str]]]:
    """``{kernel name: [(parameter name, lowered type), ...]}`` of the ``__global__`` functions.

    slangc suffixes every parameter name with ``_N``; the suffix is removed here.
    """
    kernels = {}
    for name, params in _CUDA_KERNEL_RE.findall(cuda_source):
        pairs = []
        for part in (p for p in params.split(",") if p.strip()):
            ctype, cname = part.strip().rsplit(None, 1)
            pairs.append((re.sub(r"_\d+$", "", cname), " ".join(ctype.split())))
        kernels[name] = pairs
    return kernels


def kernel_table(sources: Mapping[str, str], cuda_source: str) -> dict[str, list[Param]]:
    """Parameter lists of the kernels present in the CUDA source, checked against the sources."""
    declared = parse_slang_kernels(sources)
    table = {}
    for name, lowered in parse_cuda_kernels(cuda_source).items():
        if name not in declared:
            raise RuntimeError(
                f"kernel {name} is in slangc's output but no '[CudaKernel] void {name}(...)' "
                "declaration was found in the .slang files"
            )
        params = declared[name]
        if [p.name for p in params] != [n for n, _ in lowered]:
            raise RuntimeError(
                f"kernel {name}: parameters {[p.name for p in params]} in the .slang source but "
                f"{[n for n, _ in lowered]} in slangc's CUDA output"
            )
        for param, (_, ctype) in zip(params, lowered, strict=True):
            kind = (
                "diff" if re.fullmatch(r"DiffTensorView(_\d+)?", ctype) else CUDA_KINDS.get(ctype)
            )
            if kind != param.kind:
                raise RuntimeError(
                    f"kernel {name}: parameter {param.name} is lowered to CUDA type {ctype}, "
                    f"expected {param.kind}; {PARAM_HELP}"
                )
        table[name] = params
    return table


def table_to_json(table: Mapping[str, list[Param]]) -> dict:
    """The table as JSON lists (what ``kernels.json`` stores)."""
    return {k: [[p.name, p.kind, p.dtype] for p in ps] for k, ps in table.items()}


def table_from_json(data: Mapping[str, list]) -> dict[str, list[Param]]:
    """The inverse of `table_to_json`."""
    return {k: [Param(*p) for p in ps] for k, ps in data.items()}
