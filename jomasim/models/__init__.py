"""Flax NNX models: the §3.5 JoMA block, Scan&Snap's reparameterised layer and a multilayer
decoder-only Transformer."""

from .joma_block import JoMABlock as JoMABlock
from .scan_snap import ScanSnapModel as ScanSnapModel
from .transformer import Transformer as Transformer
from .transformer import TransformerConfig as TransformerConfig
