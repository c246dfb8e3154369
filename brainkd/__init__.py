"""brainkd: train and distill brain-tumour classifiers from MRI slices."""

__version__ = "0.1.0"
