"""Kernel parameter lists: slangc's output, the .slang declarations, and the two checked
against each other (CPU; slangc from the slangtorch wheel where a test needs it)."""

from __future__ import annotations

import pytest
from kernel_runtime_helpers import PACKAGE, PROBE_TABLE, needs_slangc, probe_module

from slang_kernel_runtime import SlangModule, parsing, slangtorch_loader


@needs_slangc
def test_slangc_emits_cuda_and_the_kernel_table(tmp_path):
    module = probe_module(tmp_path)
    source, table, version = module.emit_cuda(tmp_path)
    assert table == PROBE_TABLE
    assert "__global__ void histogram(" in source
    assert version and version != "unknown"
    assert (tmp_path / "kernels.cu").read_text() == source


def test_parse_slang_kernels_reads_attributes_comments_and_modifiers():
    source = """
    // [CudaKernel] void commented_out(TensorView<float> a)
    /* [CudaKernel]
       void also_commented(int a) */
    [Differentiable]
    [CudaKernel]
    [BackwardDerivative(foo_bwd)]
    void foo(DiffTensorView<float> a, no_diff TensorView<uint8_t> mask,
             TensorView<int64_t> ids, uint n, bool flag)
    { }
    void not_a_kernel(TensorView<float> a) { }
    [CudaKernel] void empty() { }
    """
    assert parsing.parse_slang_kernels({"a.slang": source}) == {
        "foo": [
            parsing.Param("a", "diff", "float32"),
            parsing.Param("mask", "tensor", "uint8"),
            parsing.Param("ids", "tensor", "int64"),
            parsing.Param("n", "uint"),
            parsing.Param("flag", "bool"),
        ],
        "empty": [],
    }


def test_parse_slang_kernels_accepts_access_modifiers():
    source = """
    [CudaKernel] public void a(TensorView<float> x, int n) { }
    [CudaKernel]
    [Differentiable]
    internal static void b(DiffTensorView x) { }
    [CudaKernel] public [Differentiable] void c() { }
    public void not_a_kernel(TensorView<float> x) { }
    """
    assert parsing.parse_slang_kernels({"a.slang": source}) == {
        "a": [parsing.Param("x", "tensor", "float32"), parsing.Param("n", "int")],
        "b": [parsing.Param("x", "diff", "float32")],
        "c": [],
    }


@needs_slangc
def test_public_kernels_compile_into_the_kernel_table(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "public_kernels.slang").write_text(
        "[CudaKernel] public void scale_by(TensorView<float> x, float s, uint n)\n"
        "{\n"
        "    uint i = (cudaBlockIdx() * cudaBlockDim() + cudaThreadIdx()).x;\n"
        "    if (i < n) x[i] = x[i] * s;\n"
        "}\n"
    )
    module = SlangModule(package=PACKAGE, entry=src / "public_kernels.slang")
    (tmp_path / "work").mkdir()
    _, table, _ = module.emit_cuda(tmp_path / "work")
    assert table == {
        "scale_by": [
            parsing.Param("x", "tensor", "float32"),
            parsing.Param("s", "float"),
            parsing.Param("n", "uint"),
        ]
    }


@pytest.mark.parametrize(
    ("declaration", "message"),
    [
        ("uint3 v", "parameter v has type uint3"),
        ("TensorView<float3> t", "parameter t has type TensorView"),
        ("double d", "parameter d has type double"),
        ("MyStruct s", "parameter s has type MyStruct"),
    ],
)
def test_parse_slang_kernels_rejects_unsupported_parameters(declaration, message):
    source = f"[CudaKernel] void bad(TensorView<float> x, {declaration}) {{ }}"
    with pytest.raises(RuntimeError, match=f"kernel bad: {message}"):
        parsing.parse_slang_kernels({"a.slang": source})


def test_kernel_table_checks_the_slang_source_against_the_cuda_signature():
    slang = {"a.slang": "[CudaKernel] void k(TensorView<float> x, int n) { }"}
    assert parsing.kernel_table(slang, "__global__ void k(TensorView x_0, int n_3)\n{") == {
        "k": [parsing.Param("x", "tensor", "float32"), parsing.Param("n", "int")]
    }
    with pytest.raises(RuntimeError, match=r"parameters \['x', 'n'\] in the .slang source"):
        parsing.kernel_table(slang, "__global__ void k(TensorView x_0, int m_3)\n{")
    with pytest.raises(RuntimeError, match="parameter n is lowered to CUDA type float"):
        parsing.kernel_table(slang, "__global__ void k(TensorView x_0, float n_3)\n{")
    with pytest.raises(RuntimeError, match="kernel other is in slangc's output"):
        parsing.kernel_table(slang, "__global__ void other(int a_0)\n{")


def test_add_autopybind_marks_every_kernel_once_and_keeps_line_numbers():
    text = "[CudaKernel]\nvoid a() {}\n[AutoPyBindCUDA]\n[CudaKernel]\nvoid b() {}\n"
    marked = slangtorch_loader.add_autopybind(text)
    assert marked.count("[AutoPyBindCUDA][CudaKernel]") == 2
    assert marked.count("AutoPyBindCUDA") == 2
    assert marked.count("\n") == text.count("\n")
