"""fillrobust: reproduction workflow for robustness studies on image classifiers."""

__version__ = "0.1.0"
