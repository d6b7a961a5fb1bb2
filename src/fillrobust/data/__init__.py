"""data subpackage.

Dependency-free on purpose: the Snakefile and ``config`` import :data:`SOURCE_SPLIT`.
"""

#: SynthSource as a split (``mtlat.splits``, ``topgap.splits``, ``results/eval/SynthSource``):
#: the M-TLAT and Top-GAP papers' ImageNet(-100) runs (``data.splits.make_source_split``).
SOURCE_SPLIT = "SynthSource"
