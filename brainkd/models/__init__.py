"""Model factory over timm and brainkd's own comparison models."""

from brainkd.models.factory import count_parameters, create_model

__all__ = ["count_parameters", "create_model"]
