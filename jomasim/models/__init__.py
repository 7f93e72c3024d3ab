"""Flax NNX models: the §3.5 JoMA block, the one-layer Transformer on its data with every JoMA
idealisation a switch, Scan&Snap's reparameterised layer and a multilayer decoder-only Transformer."""

from .joma_block import JoMABlock as JoMABlock
from .one_layer import OneLayerTransformer as OneLayerTransformer
from .one_layer import Probe as Probe
from .scan_snap import ScanSnapModel as ScanSnapModel
from .transformer import Transformer as Transformer
from .transformer import TransformerConfig as TransformerConfig
