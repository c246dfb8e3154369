"""Data: class folders, preprocessing, the on-disk cache, splits and the DataModule."""
