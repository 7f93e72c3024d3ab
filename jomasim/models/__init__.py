"""Flax NNX models: the §3.5 JoMA block and a multilayer decoder-only Transformer."""

from .joma_block import JoMABlock as JoMABlock
from .transformer import Transformer as Transformer
from .transformer import TransformerConfig as TransformerConfig
