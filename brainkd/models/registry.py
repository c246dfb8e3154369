"""Register brainkd's own comparison models with the model factory."""

from brainkd.models.baselines import MLP, PlainCNN
from brainkd.models.dbn import DeepBeliefNetwork
from brainkd.models.factory import register_model

register_model("plain_cnn")(PlainCNN)
register_model("mlp")(MLP)
register_model("dbn")(DeepBeliefNetwork)
