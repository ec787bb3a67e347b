"""Corpus sources, the byte-level BPE tokenizer and token shards (pipeline stage: data)."""
