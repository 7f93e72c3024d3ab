"""Figures of jomasim runs, written to files: one module per study, the shared helpers in
`_common`. Each draws a study's typed result (`plot_fig3(result, path)`); the block's figures draw
its `BlockResults`, the sweep's its merged table, the fit's its run and fit."""

from .block import plot_block_theory as plot_block_theory
from .block import plot_compare as plot_compare
from .bounce import plot_bounce as plot_bounce
from .fig3 import plot_fig3 as plot_fig3
from .fig4 import plot_fig4 as plot_fig4
from .fit import plot_fit as plot_fit
from .pretrained import plot_pretrained as plot_pretrained
from .reach import plot_reach as plot_reach
from .scan_snap import plot_scan_snap as plot_scan_snap
from .sweep import plot_sweep as plot_sweep
from .table1 import plot_table1 as plot_table1
from .wikitext import plot_wikitext as plot_wikitext
