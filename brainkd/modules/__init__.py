"""LightningModules: the plain classifier (teacher or baseline) and the distillation module."""

from brainkd.modules.classifier import TeacherModule
from brainkd.modules.distill import DistillModule

__all__ = ["DistillModule", "TeacherModule"]
