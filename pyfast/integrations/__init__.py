"""Glue between pyfast and the libraries its users already run: each submodule imports its peer, so nothing here
is imported by ``import pyfast`` (importing transformers alone takes seconds).

- ``pyfast.integrations.transformers``: ``attn_implementation="pyfast"`` for HF transformers models, padded and
  padding-free (packed) batches; importing it registers the implementation.
"""
