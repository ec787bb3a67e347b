"""Interoperability with other codebases' checkpoint formats (the paper's reference code)."""

from sparsecircuits.interop.openai import (
    ImportResult,
    convert_reference,
    export_openai,
    import_openai,
    load_reference,
    load_reference_tokenizer,
    tokenizer_from_gpt2_files,
)

__all__ = [
    "ImportResult",
    "convert_reference",
    "export_openai",
    "import_openai",
    "load_reference",
    "load_reference_tokenizer",
    "tokenizer_from_gpt2_files",
]
