"""earmark.nn: torch building blocks shared by the model stages (students and teachers), which may not import each other.

A floor like audio/ and engine/: it imports nothing of earmark. A layer lives here once two stages build with it.
"""

from earmark.nn.resize import match_time
from earmark.nn.transformer import Attention, Block, Mlp

__all__ = ["Attention", "Block", "Mlp", "match_time"]
